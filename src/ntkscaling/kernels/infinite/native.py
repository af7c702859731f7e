"""The fused C kernel of the infinite-kernel image-pair step (pairstep.c): built, loaded and called here.

kernels/infinite/api.py's torch path makes one pass over memory per operation (conv shifts, affine map, ReLU, pooling),
and at 32x32 a pair's covariances (8 MB each) leave the cache between passes. pairstep.c computes each
output pixel's slab of covariances through the whole step while it is in the cache, with an arctangent
written as a polynomial the compiler vectorizes. It is compiled on first use with the system C compiler
(`$CC`, else `cc`; the same one torch.compile needs) into a cache folder (`$NTKSCALING_CACHE`, else
`$XDG_CACHE_HOME/ntkscaling`, else ~/.cache/ntkscaling), keyed by the source, the compiler and the CPU, so
edits rebuild it and a shared home serves different machines. It is loaded through ctypes, which releases
the GIL during the call, so a few Python threads split the work. Where no compiler works, `available()`
is False (with the reason in `unavailable_reason()`) and kernels/infinite/api.py keeps its torch path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ...files import atomic_path
from ...nets.layers import relu_step

PAIR_STEP = relu_step  # the nonlinearity step pairstep.c computes (tests/test_native.py holds it to it)

SOURCE = Path(__file__).with_name("pairstep.c")
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]

_state: dict = {}


def _cache_dir() -> Path:
    if os.environ.get("NTKSCALING_CACHE"):
        return Path(os.environ["NTKSCALING_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ntkscaling"


def _cpu_signature() -> str:
    """The CPU's feature flags (-march=native code from one CPU may not run on another)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build() -> Path:
    cc = shlex.split(os.environ.get("CC", "cc"))
    if not shutil.which(cc[0]):
        raise RuntimeError(f"no C compiler: {cc[0]!r} not found (set CC)")
    version = subprocess.run(cc + ["--version"], capture_output=True, text=True).stdout
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(cc + FLAGS).encode(), version.encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    out = _cache_dir() / f"pairstep-{key}.so"
    if out.exists():
        return out
    with atomic_path(out) as tmp:  # concurrent jobs may build the same file
        run = subprocess.run(cc + FLAGS + ["-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {run.stderr.strip()[-2000:]}")
    return out


def _library():
    if "lib" not in _state and "error" not in _state:
        try:
            lib = ctypes.CDLL(str(_build()))
            fn = lib.pair_step
            fn.restype = ctypes.c_int
            i64, ptr, dbl = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
            fn.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, i64, ptr, ptr, dbl, dbl, ctypes.c_int, ptr, ptr]
            _state["lib"] = fn
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            _state["error"] = f"{type(err).__name__}: {err}"
    return _state.get("lib")


def available() -> bool:
    """Whether the kernel builds and loads here (tried once per process)."""
    if os.environ.get("NTKSCALING_NATIVE", "1") == "0":
        return False
    return _library() is not None


def unavailable_reason() -> str | None:
    if os.environ.get("NTKSCALING_NATIVE", "1") == "0":
        return "disabled by NTKSCALING_NATIVE=0"
    return None if available() else _state.get("error")


def _pool(threads: int) -> ThreadPoolExecutor:
    if _state.get("threads") != threads:
        if "pool" in _state:
            _state["pool"].shutdown()
        _state["pool"], _state["threads"] = ThreadPoolExecutor(threads, thread_name_prefix="pairstep"), threads
    return _state["pool"]


def pair_step(qa, qb, w2: float, b2: float, pool: bool, out_S, out_T, *, S=None, T=None, xa=None, xb=None,
              selves: bool = False, threads: int | None = None):
    """The conv (3x3 SAME average of shifts), affine map (w2, b2) and ReLU step for every pair of a block,
    then the 2x2 average pool of both images if `pool`, into out_S and out_T.

    The N pairs are (i, j) with i = n // B, j = n % B for qa (A, H, W) and qb (B, H, W), the images'
    variances before the ReLU (selves: pair n is image n with itself, qa and qb (N, H, W)). Before the conv:
    S, T (N, H, W, H, W), Sigma and Theta (T None: Theta' = Sigma'), or for the first layer the images xa
    (A, C, H, W) and xb (B, C, H, W), Sigma being the sum over channels of xa xb per pixel pair. Outputs
    (N, H, W, H, W), or (N, H/2, W/2, H/2, W/2) if pool. All contiguous float64 tensors on the CPU.
    """
    fn = _library()
    if fn is None:
        raise RuntimeError(f"the native pair step is unavailable: {_state.get('error')}")
    if (S is None) == (xa is None) or (xa is None) != (xb is None) or (xa is not None and T is not None):
        raise ValueError("pair_step: give S (and T) or the images xa and xb")
    A, H, W = qa.shape
    B = qb.shape[0]
    N = A if selves else A * B
    C = 0 if xa is None else xa.shape[1]
    Ho, Wo = (H // 2, W // 2) if pool else (H, W)
    shapes = {"S": (N, H, W, H, W), "T": (N, H, W, H, W), "xa": (A, C, H, W), "xb": (B, C, H, W),
              "qb": (A if selves else B, H, W), "out_S": (N, Ho, Wo, Ho, Wo), "out_T": (N, Ho, Wo, Ho, Wo)}
    tensors = {"S": S, "T": T, "xa": xa, "xb": xb, "qa": qa, "qb": qb, "out_S": out_S, "out_T": out_T}
    for name, t in tensors.items():
        if t is None:
            continue
        if t.dtype != torch.float64 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"pair_step: {name} must be a contiguous float64 CPU tensor")
        if name in shapes and tuple(t.shape) != shapes[name]:
            raise ValueError(f"pair_step: {name} has shape {tuple(t.shape)}, expected {shapes[name]}")
    if pool and (H % 2 or W % 2):
        raise ValueError(f"pair_step: pooling needs even image sizes, got {H}x{W}")
    units = N * (Ho if pool else H)
    threads = max(1, min(threads or torch.get_num_threads(), units))
    ptrs = [ctypes.c_void_p(t.data_ptr()) if t is not None else None for t in (S, T, xa, xb)]
    q_ptrs = [ctypes.c_void_p(qa.data_ptr()), ctypes.c_void_p(qb.data_ptr())]
    outs = [ctypes.c_void_p(out_S.data_ptr()), ctypes.c_void_p(out_T.data_ptr())]

    def run(lo, hi):
        return fn(lo, hi, 0 if selves else B, H, W, *ptrs, C, *q_ptrs, float(w2), float(b2), int(pool), *outs)

    bounds = [units * k // threads for k in range(threads + 1)]
    if threads == 1:
        codes = [run(0, units)]
    else:
        codes = list(_pool(threads).map(run, bounds[:-1], bounds[1:]))
    if any(codes):
        raise MemoryError("pair_step: the native kernel could not allocate its scratch buffers")
