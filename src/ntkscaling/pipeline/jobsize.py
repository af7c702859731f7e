"""Resource requests (memory in MB, runtime in minutes, threads) of the workflow's jobs, sized from the job
itself: the kernel's rows and outputs, the prepared data's size, the training steps. The workflow caps each
request at the profile's limits (config keys max_job_mem_mb, max_job_runtime; Snakemake's --max-threads for
threads), and every request grows with the attempt, so a job killed for time or memory is retried bigger
(profiles set `retries`).

The runtimes are generous upper guesses for one GPU (the paper-scale settings) that also hold on CPUs at
the CPU presets' scale; nothing in a job depends on them.
"""
from __future__ import annotations

import math

BASE_MB = 2000  # Python with torch and Lightning imported, before any data (a generous request)
IMPORTS_MB = 500  # the least a job holds before any data (measured: torch, numpy and Lightning imported, 396 MB)
MB = 1e6
# Minutes for the largest jobs of the paper preset (about 50 000 kernel rows, 50 000 steps) on one GPU;
# smaller jobs scale down from them (kernels by rows^2, training by steps).
PAPER_ROWS, PAPER_STEPS = 50_000, 50_000
ENTK_MINUTES, INFINITE_MINUTES, TRAIN_MINUTES = 240, 1440, 360
SMALL_MINUTES = 10
THREADED_ROWS = 4000  # eNTKs below this size are dominated by start-up: one thread
MOST_THREADS = 8


def kernel_mb(rows: int, outputs: int = 1, bytes_per_entry: int = 4) -> float:
    """Size of one kernel matrix on `rows` rows (outputs x outputs blocks per pair for the full kind)."""
    return rows ** 2 * outputs ** 2 * bytes_per_entry / MB


def capped(value: float, attempt: int, cap) -> int:
    """`value` grown with the attempt (x1, x2, x3, ...), rounded up, at most `cap` (None: no cap)."""
    value = math.ceil(value * max(1, int(attempt)))
    return value if cap is None else min(value, int(cap))


def entk_mem_mb(rows: int, outputs: int = 1) -> float:
    # the kernel in torch and as numpy, plus room for the Jacobian chunks (entk sizes them to what is left)
    return BASE_MB + 2 * kernel_mb(rows, outputs) + 2000


def entk_minutes(rows: int, outputs: int = 1, kernels: int = 1) -> float:
    return SMALL_MINUTES + kernels * ENTK_MINUTES * outputs ** 2 * (rows / PAPER_ROWS) ** 2


def infinite_mem_mb(rows: int) -> float:
    # NTK and NNGP in float64, one copy each on the way to disk, plus the layer-by-layer workspace
    return BASE_MB + 4 * kernel_mb(rows, bytes_per_entry=8) + 2000


def infinite_minutes(rows: int) -> float:
    return SMALL_MINUTES + INFINITE_MINUTES * (rows / PAPER_ROWS) ** 2


def regression_mem_mb(rows: int, n_max: int) -> float:
    # the kernel file (mapped) plus float64 train blocks and their eigendecomposition workspace
    return BASE_MB + kernel_mb(rows) + 5 * kernel_mb(n_max, bytes_per_entry=8)


def regression_minutes(n_max: int, n_count: int) -> float:
    return SMALL_MINUTES + n_count * 60 * (n_max / PAPER_ROWS) ** 3


def evolution_mem_mb(rows: int) -> float:
    # the current, initial and final kernels at once, each in torch and numpy, plus Jacobian room
    return BASE_MB + 6 * kernel_mb(rows) + 2000


def train_mem_mb(data_mb: float) -> float:
    # the prepared data as tensors (and its f0) plus the network and optimizer
    return BASE_MB + 4 * data_mb


def train_minutes(steps: int) -> float:
    return SMALL_MINUTES + TRAIN_MINUTES * steps / PAPER_STEPS


def kernel_threads(rows: int, small: int = 1) -> int:
    """`small` threads below THREADED_ROWS rows (start-up dominates), MOST_THREADS above."""
    return small if rows < THREADED_ROWS else MOST_THREADS


def kernel_row_count(config: dict, n_max: int, pool: int = 0) -> int:
    """Rows of a kernel whose training block has n_max rows: training, validation, test, then `pool` pool rows
    (data.kernel_rows; an upper bound: a small training pool holds fewer)."""
    return n_max + config["dataset"]["val_size"] + config["dataset"]["test_size"] + pool


def kernel_sizes(config: dict, n_classes: int) -> list[tuple[str, float]]:
    """(what, GB) of every kernel file the run writes (the largest of each kind)."""
    n_max = max(config["sample_sizes"])
    pool = config["theory"]["pool"]  # mean and sum kinds only
    out = [(f"eNTK ({kind} kind)", kernel_row_count(config, n_max, 0 if kind == "full" else pool) ** 2 * 4
            * (n_classes ** 2 if kind == "full" else 1) / 1e9)
           for kind in sorted(set(config["kernel"]["kinds"]) | {config["evolution"]["kind"]})]
    rows = kernel_row_count(config, n_max, pool)
    if config["kernel"]["infinite"]:
        out.append(("infinite NTK (float64)", rows ** 2 * 8 / 1e9))
    return out
