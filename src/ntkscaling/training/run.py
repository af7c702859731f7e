"""Training one network on nested subset n (`train_network`): for a step budget that does not depend on n,
with checkpoints on a schedule that always includes step 0 (the initialization) and the last step, metrics at
log-spaced evaluation steps, and the test predictions of the network at its last step (`network`) and at its
best-validation evaluation (`network_best`). A run restarted in the same folder resumes from the latest
checkpoint of an identical run and gives the numbers an uninterrupted run would."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from ..data import md5sum
from ..files import atomic_path
from ..analysis.losses import evaluate
from .callbacks import CheckpointAndEvaluate, LineProgress
from .checkpoints import resume_point
from .divergence import DivergenceError
from .module import NetworkModule, SubsetDataModule
from .settings import (SELECT_BY, VALIDATION_KEYS, NetworkSettings, TrainSettings, checkpoint_steps, evaluation_steps,
                       step_budget, velocity_gap_steps, with_velocity_partners)


def train_network(prepared_path, order_path, n: int, seed: int, out_dir, network: NetworkSettings,
                  train: TrainSettings = TrainSettings(), *, log_points=0, checkpoint_epochs=(), dataset="",
                  accelerator="auto", progress=None, resume=True, cache_f0=True, live_csv=None, velocity_gap=0.0):
    """Train `network` on nested subset n of a prepared dataset as `train` says.

    Args:
        prepared_path, order_path: the prepared dataset (data.prepare) and its nested order (data.nested_order).
        n, seed: the subset size and the seed (the initialization depends on seed and width only).
        out_dir: where checkpoints go; a run restarted there (a requeued SLURM job, a re-run after a crash)
            resumes from the latest checkpoint of an identical run with the same numbers as an
            uninterrupted run; `resume=False` starts over.
        network, train: the settings (train.batch_size is capped at n).
        log_points, checkpoint_epochs: checkpoints at log-spaced steps and at these epochs (plus step 0 and
            the last step); velocity_gap: also each one's partner that fraction of the budget later (the
            kernel evolution's fixed-gap velocity).
        cache_f0: False recomputes a centred network's f0 at every step instead of once (the plain
            definition; benchmarks/bench_training.py times both).
        live_csv: a file that gets one line per evaluation as training goes (`LiveRecord`), or None.

    Returns:
        (tidy rows, pointwise records, checkpoint paths by step). The pointwise records are
        {"network": last step, "network_best": best validation evaluation}, each with per-test-point `loss`,
        `mse`, `error`, the test predictions `pred` and its `step`.
    """
    n, seed = int(n), int(seed)
    train = dataclasses.replace(train, batch_size=min(int(train.batch_size), n))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _torch_flags_restored(), _lightning_quiet():
        pl.seed_everything(seed * 1_000_003 + n, workers=True, verbose=False)
        dm = SubsetDataModule(prepared_path, order_path, n, train.batch_size, seed=seed * 1_000_003 + n)
        dm.setup()
        steps_per_epoch = math.ceil(n / train.batch_size)
        total = step_budget(n, train.batch_size, train.steps, train.epochs)
        module = NetworkModule(network, train, tuple(dm.x_train.shape[1:]), dm.n_classes, init_seed=seed,
                               total_steps=total)
        schedule = checkpoint_steps(total, steps_per_epoch, log_points, checkpoint_epochs)
        if velocity_gap:
            schedule = with_velocity_partners(schedule, total, velocity_gap_steps(total, velocity_gap))
        eval_steps = evaluation_steps(total, train.eval_points)
        signature = {"n": n, "seed": seed, "total_steps": total, "schedule": schedule, "eval_steps": eval_steps,
                     "hparams": dict(module.hparams), "prepared": md5sum(prepared_path), "order": md5sum(order_path)}
        if network.center and cache_f0:  # f0 never changes: once, not a second forward pass per step (25% of it)
            with torch.no_grad():
                dm.f0_train = module.net0(dm.x_train)
        ident = {"dataset": dataset, "arch": network.arch, "width": network.width, "seed": seed,
                 "method": "network", "n": n, "k": n}
        cb = CheckpointAndEvaluate(schedule, out_dir, dm, train.loss, ident, signature, eval_steps,
                                   SELECT_BY[train.select_by], live_csv)
        for stale in out_dir.glob(".step*.ckpt.*tmp"):  # cut short by an interruption: never trusted
            stale.unlink()
        start = resume_point(out_dir, signature) if resume else None
        if start is not None and start[1] < total:
            dm.sampler.set_epoch(start[1] // steps_per_epoch)
            dm.sampler.skip_batches = start[1] % steps_per_epoch
            print(f"resuming from {start[0]} (step {start[1]} of {total})", flush=True)
        else:
            start = None
        if progress is None:  # Lightning's bar on a terminal, plain lines in a log file
            progress = sys.stderr.isatty()
        trainer = pl.Trainer(max_steps=total, max_epochs=math.ceil(total / steps_per_epoch), accelerator=accelerator,
                             devices=1, deterministic=True, logger=False, enable_checkpointing=False,
                             enable_model_summary=False, enable_progress_bar=progress,
                             callbacks=[cb] if progress else [cb, LineProgress(total)],
                             default_root_dir=str(out_dir), num_sanity_val_steps=0)
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(start[0]) if start else None, weights_only=True)
        except DivergenceError as err:  # what was measured before, for a caller that records the divergence
            err.rows, err.step, err.epoch = cb.rows, trainer.global_step, trainer.global_step / steps_per_epoch
            raise
        cb.record(trainer, module)  # the last step, whatever the schedule rounding
        records = {"network": _test_record(module, dm, train.loss, trainer.global_step, cb.rows)}
        best = cb.best
        module.load_state_dict(best["state"])
        records["network_best"] = _test_record(module, dm, train.loss, best["step"], cb.rows)
    rows = cb.rows + [{**r, "method": "network_best"} for r in cb.rows if r["step"] == best["step"]]
    return rows, records, cb.saved


def _test_record(module, data, loss: str, step: int, rows) -> dict:
    """Per-test-point values and predictions of `module`, as the pointwise record of one predictor, with its
    validation MSE and error at `step` (from the evaluation `rows`): what says whether it learned at all."""
    res = evaluate(module, data.x_test, data.y_test, loss, outputs=True)
    val = {r["metric"]: r["value"] for r in rows if r["step"] == step and r["metric"] in VALIDATION_KEYS}
    return {**{k: v.numpy() for k, v in res.items()}, "step": step, **{k: val[k] for k in VALIDATION_KEYS}}


def save_init_checkpoint(path, in_shape, out_dim: int, seed: int, network: NetworkSettings):
    """A Lightning checkpoint of the untrained network of `seed` (the same network as every run's step 0)."""
    module = NetworkModule(network, in_shape=tuple(in_shape), out_dim=out_dim, init_seed=seed)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_epochs=0, accelerator="cpu")
    trainer.strategy.connect(module)
    with atomic_path(path) as tmp:
        trainer.save_checkpoint(tmp)


# Lightning's messages that say nothing about this run (advertising, hardware it does not use, warnings
# about choices made on purpose: f0's frozen copy is in eval mode, checkpoints are loaded weights-only, and a
# run resumed mid-epoch skips the batches already trained on by itself: EpochBatches.skip_batches)
LIGHTNING_NOISE = (r"The `srun` command is available", r"isinstance\(treespec, LeafSpec\)",
                   r"Found \d+ module\(s\) in eval mode", r"`weights_only` was not set", r"Tip: ",
                   r"GPU available: ", r"TPU available: ", r"HPU available: ", r"`Trainer.fit` stopped: ",
                   r"You're resuming from a checkpoint that ended before the epoch ended")


class _NoiseFilter:
    def __init__(self, patterns):
        import re
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record) -> bool:
        return not self.pattern.search(record.getMessage())


@contextlib.contextmanager
def _lightning_quiet():
    """Training without Lightning's noise in the job logs (`LIGHTNING_NOISE`); every other warning stays."""
    import logging
    import warnings
    noise = _NoiseFilter(LIGHTNING_NOISE)
    # a logger's own filter misses records its children pass up: filter the handlers that print them too
    loggers = [logging.getLogger(name) for name in (None, "lightning.pytorch", "lightning.fabric", "lightning_fabric",
                                                   "pytorch_lightning")]
    handlers = [handler for logger in loggers for handler in logger.handlers]
    for handler in handlers:
        handler.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for pattern in LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=".*" + pattern)  # the module matches from the start
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(noise)


@contextlib.contextmanager
def _torch_flags_restored():
    """Lightning's deterministic=True switches torch's deterministic algorithms on for the whole process,
    and with them torch.empty's filling of fresh memory (every later large allocation then touches all its
    pages: the eNTK's feature buffers, for one); the caller's settings come back after training."""
    import torch.utils.deterministic as det
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             det.fill_uninitialized_memory, cudnn.deterministic, cudnn.benchmark)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        det.fill_uninitialized_memory, cudnn.deterministic, cudnn.benchmark = saved[2:]
