"""Network training on a nested subset (PyTorch Lightning): the "network" curve of the pipeline.

`NetworkModule` wraps the plain network of models.py. By default its output is *centred*:
f(x) - f0(x), with f0 a frozen copy of the initial network, so the function starts at exactly zero and, in
the lazy limit, training converges to kernel regression with the network's NTK (the gradients, hence the
eNTK, are those of f). `output_scale` alpha multiplies the centred output and divides the loss by alpha^2
(lazy training: large alpha is the kernel limit, small alpha leaves it). `train_network` trains it on subset n for a step budget that does not depend on n,
with a learning-rate schedule (linear warm-up, then cosine or linear decay, or constant), saves checkpoints
on a schedule that always includes step 0 (the initialization) and the last step, evaluates train,
validation and test metrics at log-spaced steps, and returns tidy rows plus the per-test-point values of the
network at its last step (`network`) and at its best-validation evaluation (`network_best`: early stopping
chosen on validation data, never on the test set). The initialization depends only on (seed, width), so
every n of a seed starts from the same network and shares one eNTK at init.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from torch.utils.data import DataLoader, TensorDataset

from . import models
from .data import DatasetError, load_prepared, md5sum, step_budget
from .io import FileFormatError, InputError, is_workflow_file, load_npy, record_digest, tidy_row
from .metrics import LOSSES, evaluate, per_point_loss

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine", "linear")
SELECT_BY = {"mse": "val_mse", "error": "val_error"}  # validation metric of early stopping
BLOWUP = 1e4  # a loss this many times its value at initialization means training diverged


@dataclass(frozen=True)
class NetworkSettings:
    """The network a run trains: the config's `model` section with one width (models.build_network: the
    built-in `arch`, or a user's `factory`, whose tables are still labelled by `arch`)."""
    arch: str
    width: int
    depth: int | None = None
    parameterization: str = "ntk"
    W_std: float = 2 ** 0.5
    b_std: float = 0.0
    center: bool = True   # train f(x) - f0(x): the function starts at zero (the matched kernel predictor)
    output_scale: float = 1.0  # alpha: predict alpha (f - f0), loss / alpha^2 (lazy training; centred only)
    factory: str | None = None          # a user's network ("package.module:function" or "file.py:function")
    factory_kwargs: dict | None = None  # its keyword arguments beyond in_shape, out_dim and width

    @classmethod
    def from_config(cls, model: dict, width: int) -> "NetworkSettings":
        return cls(width=int(width), **{f.name: model[f.name] for f in dataclasses.fields(cls)
                                        if f.name != "width" and f.name in model})

    def __post_init__(self):
        if not self.output_scale > 0:
            raise ValueError(f"model.output_scale={self.output_scale!r}: expected a number > 0")
        if self.output_scale != 1.0 and not self.center:
            raise ValueError(f"model.output_scale={self.output_scale!r} needs model.center: true (an uncentred "
                             f"network scaled by alpha starts at alpha * f0, unbounded as alpha grows)")


@dataclass(frozen=True)
class TrainSettings:
    """How a network is trained: the config's `train` section and `select_by`. With `steps` set, exactly
    that many optimizer steps whatever n; otherwise `epochs` passes over the n examples."""
    loss: str = "mse"
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int | None = 100
    steps: int | None = None
    lr_schedule: str = "constant"
    warmup: float = 0.0
    eval_points: int = 0       # log-spaced evaluations of train/validation/test metrics
    select_by: str = "mse"     # early stopping's validation metric: mse or error

    def __post_init__(self):
        for name, known in (("loss", LOSSES), ("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
                            ("select_by", tuple(SELECT_BY))):
            if getattr(self, name) not in known:
                key = name if name == "select_by" else f"train.{name}"  # select_by is a top-level config key
                raise ValueError(f"{key}={getattr(self, name)!r} is unknown; expected one of {known}")

    @classmethod
    def from_config(cls, train: dict, select_by: str = "mse") -> "TrainSettings":
        return cls(select_by=select_by, **{f.name: train[f.name] for f in dataclasses.fields(cls)
                                           if f.name != "select_by" and f.name in train})


class DivergenceError(InputError, RuntimeError):
    """Training produced a NaN or infinite loss (a setting to change: reported without a traceback)."""


class EpochBatches(torch.utils.data.Sampler):
    """The batches of one epoch, as lists of indices: a permutation of range(n) per epoch, a pure function of
    (seed, epoch), cut into batches of `batch_size` (the last one shorter), so a run resumed from a checkpoint
    sees exactly the batches an uninterrupted run would; `skip_batches` drops the batches of the resumed epoch
    that were already trained on (once). Whole batches, not single indices: the loader then takes each batch
    with one indexing of the tensors instead of collating batch_size single examples (a third of a small
    network's step)."""

    def __init__(self, n: int, seed: int, batch_size: int):
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int):  # Lightning calls this at the start of every epoch
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        skip, self.skip_batches = self.skip_batches, 0
        return iter(torch.randperm(self.n, generator=g).split(self.batch_size)[skip:])

    def __len__(self):  # batches per epoch
        return math.ceil(self.n / self.batch_size)


class SubsetDataModule(pl.LightningDataModule):
    """Nested subset n of a prepared dataset; batches drawn by `EpochBatches` seeded from `seed`."""

    def __init__(self, prepared_path, order_path, n: int, batch_size: int, seed: int):
        super().__init__()
        self.prepared_path, self.order_path = str(prepared_path), str(order_path)
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.sampler = EpochBatches(self.n, self.seed, self.batch_size)
        self.f0_train = None  # the frozen initial outputs on the training points, when the network is centred

    def setup(self, stage=None):
        d = load_prepared(self.prepared_path)
        order = load_npy(self.order_path)
        if self.n > len(order):
            raise DatasetError(f"n={self.n} is larger than the training pool ({len(order)} examples)")
        idx = order[: self.n]
        self.n_classes = int(d["n_classes"])
        self.x_train = torch.from_numpy(d["x_train"][idx])
        self.y_train = torch.from_numpy(d["y_train"][idx])
        self.x_val = torch.from_numpy(d["x_val"])
        self.y_val = torch.from_numpy(d["y_val"])
        self.x_test = torch.from_numpy(d["x_test"])
        self.y_test = torch.from_numpy(d["y_test"])

    def train_dataloader(self):
        tensors = (self.x_train, self.y_train) + (() if self.f0_train is None else (self.f0_train,))
        # batch_size=None: each item the sampler yields is a whole batch's indices, taken in one indexing
        return DataLoader(TensorDataset(*tensors), batch_size=None, sampler=self.sampler)


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup: float = 0.0) -> float:
    """Multiplier of the learning rate at optimizer step `step`: a linear warm-up over the first `warmup`
    fraction of the budget, then constant, cosine decay to 0, or linear decay to 0 at `total_steps`."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"train.lr_schedule={schedule!r} is unknown; expected one of {LR_SCHEDULES}")
    warm = int(round(warmup * total_steps))
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


class NetworkModule(pl.LightningModule):
    """A network of models.py under training. Its checkpoint's hyper_parameters hold the settings as plain
    dicts ({"network": ..., "train": ..., "in_shape", "out_dim", "init_seed", "total_steps"}), which
    models.load_network reads back; the module itself keeps the records as `network` and `train_settings`."""

    def __init__(self, network: NetworkSettings | dict, train: TrainSettings | dict = TrainSettings(),
                 in_shape=(1,), out_dim: int = 1, init_seed: int = 0, total_steps: int = 1):
        super().__init__()
        network = network if isinstance(network, NetworkSettings) else NetworkSettings(**network)
        train = train if isinstance(train, TrainSettings) else TrainSettings(**train)
        self.save_hyperparameters({"network": dataclasses.asdict(network), "train": dataclasses.asdict(train),
                                   "in_shape": list(in_shape), "out_dim": int(out_dim), "init_seed": int(init_seed),
                                   "total_steps": int(total_steps)})
        self.network, self.train_settings = network, train
        self.net = models.build_network(dataclasses.asdict(network), in_shape, out_dim, init_seed)
        # f0: the frozen initial function, subtracted from the output (kept in checkpoints, never trained);
        # always in eval mode, so that a module with BatchNorm or dropout subtracts one fixed function
        self.net0 = copy.deepcopy(self.net).requires_grad_(False).eval() if network.center else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.net0 is not None:
            self.net0.eval()
        return self

    def forward(self, x):
        out = self.net(x)
        return out if self.net0 is None else self.network.output_scale * (out - self.net0(x))

    def training_step(self, batch, batch_idx):
        x, y, *f0 = batch  # f0: the frozen initial outputs, precomputed once (a centred network's f - f0)
        scale = self.network.output_scale
        out = scale * (self.net(x) - f0[0]) if f0 else self(x)
        t = self.train_settings
        # divided by alpha^2: the function moves at the same rate whatever alpha (Chizat, Oyallon, Bach 2019)
        loss = per_point_loss(out, y, t.loss).mean() / scale ** 2
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"training diverged: loss={loss.item()} at epoch {self.current_epoch}, step {self.global_step} "
                f"(lr={t.lr}, optimizer={t.optimizer}); lower train.lr")
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and trainer.progress_bar_callback is not None:  # a terminal's bar: 40% of a small step
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        t, total = self.train_settings, self.hparams.total_steps
        params = self.net.parameters()
        if t.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, total, t.lr_schedule, t.warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def checkpoint_steps(total_steps: int, steps_per_epoch: int, log_points: int = 0, epochs=()) -> list[int]:
    """Step 0, the last step, `log_points` log-spaced steps in between, and the asked epoch boundaries."""
    steps = {0, int(total_steps)}
    if log_points > 0 and total_steps > 1:
        steps |= {int(round(s)) for s in np.logspace(0, math.log10(total_steps), log_points)}
    steps |= {int(e) * steps_per_epoch for e in epochs if 0 < int(e) * steps_per_epoch <= total_steps}
    return sorted(steps)


class CheckpointAndEvaluate(pl.Callback):
    """Evaluate train/validation/test metrics at each scheduled evaluation step, save a checkpoint at each
    checkpoint step, and keep the weights of the best validation evaluation so far after step 0 (early
    stopping is chosen on validation data, `select` names the metric, among trained networks only: the
    untrained function at step 0 would let a curve's smallest n sit at chance and fake a steep slope)."""

    def __init__(self, steps, out_dir, data, loss: str, ident: dict, signature: dict | None = None,
                 eval_steps=(), select: str = "val_mse", live_csv=None):
        self.steps, self.out_dir = set(steps), Path(out_dir)
        self.eval_steps = set(eval_steps) | self.steps
        self.data, self.loss, self.ident, self.select = data, loss, ident, select
        self.signature = signature or {}
        self.rows, self.saved, self.initial = [], {}, {}
        self.best = None  # {"step", "epoch", "value", "state"}: the best validation evaluation so far
        self.live = LiveRecord(live_csv) if live_csv else None

    # Saved in every checkpoint and restored on resume: the rows so far, the best evaluation, and what run
    # they belong to.
    def state_dict(self):
        return {"rows": self.rows, "initial": self.initial, "signature": self.signature, "best": self.best,
                "saved": {int(k): str(v) for k, v in self.saved.items()}}

    def load_state_dict(self, state):
        self.rows, self.initial = list(state["rows"]), dict(state["initial"])
        self.saved = {int(k): Path(v) for k, v in state["saved"].items()}
        self.best = state.get("best")
        if self.live:  # resumed: the record restarts from what the checkpoint holds
            self.live.rewrite(self.rows)

    def evaluated(self, step: int) -> bool:
        return any(r["step"] == step for r in self.rows)

    def evaluate(self, trainer, module):
        step = trainer.global_step
        epoch = step / max(1, trainer.num_training_batches)
        values = {}
        for split in ("train", "val", "test"):
            x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
            res = evaluate(module, x, y, self.loss)
            for metric in ("loss", "mse", "error"):
                name, value = f"{split}_{metric}", float(res[metric].mean())
                start = self.initial.setdefault(name, value)
                if not math.isfinite(value) or (metric != "error" and value > BLOWUP * max(start, 1e-12)):
                    # a finite blow-up counts too: dead ReLUs can keep the train loss tame while weights explode
                    raise DivergenceError(f"training diverged: {name} is {value:.4g} at step {step} "
                                          f"(it was {start:.4g} at step 0); lower train.lr")
                self.rows.append(tidy_row(**self.ident, epoch=epoch, step=step, metric=name, value=value))
                values[name] = value
        if self.live:
            self.live.append(step, epoch, values)
        # step 0 is the untrained network (a centred one predicts 0): never reported as a trained network
        if step > 0 and (self.best is None or values[self.select] < self.best["value"]):
            self.best = {"step": step, "epoch": epoch, "value": values[self.select],
                         "state": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}}

    def record(self, trainer, module):
        step = trainer.global_step
        if not self.evaluated(step):
            self.evaluate(trainer, module)
        if step not in self.steps or step in self.saved:
            return
        path = self.out_dir / f"step{step:08d}.ckpt"
        tmp = path.with_name(f".{path.name}.tmp")
        self.saved[step] = path  # before saving: the checkpoint's own state must say this step is done
        trainer.save_checkpoint(tmp)
        os.replace(tmp, path)
        if is_workflow_file(path):
            record_digest(path)

    def on_train_start(self, trainer, module):
        self.record(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step in self.eval_steps:
            self.record(trainer, module)


class LiveRecord:
    """One CSV line per evaluation, written as training goes (`tail -f` follows it): step, epoch and the
    train/validation/test loss, MSE and error. A log, not an output: metrics.csv, written when the job
    ends, is what the workflow reads."""
    COLUMNS = ("step", "epoch") + tuple(f"{split}_{metric}" for split in ("train", "val", "test")
                                        for metric in ("loss", "mse", "error"))

    def __init__(self, path):
        self.path = Path(path)
        self.rewrite([])

    def rewrite(self, rows):
        by_step = {}
        for r in rows:
            by_step.setdefault((r["step"], r["epoch"]), {})[r["metric"]] = r["value"]
        with open(self.path, "w") as f:
            f.write(",".join(self.COLUMNS) + "\n")
        for (step, epoch), values in by_step.items():
            self.append(step, epoch, values)

    def append(self, step, epoch, values: dict):
        fields = [str(step), f"{epoch:.6g}"] + [f"{values[c]:.6g}" if c in values else "" for c in self.COLUMNS[2:]]
        with open(self.path, "a") as f:
            f.write(",".join(fields) + "\n")


class LineProgress(pl.Callback):
    """Plain progress lines for log files (about every 10% of training, with an ETA)."""

    def __init__(self, total_steps: int, lines: int = 10):
        self.total, self.every = total_steps, max(1, total_steps // lines)

    def on_train_start(self, trainer, module):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every == 0 or step == self.total:
            el = time.perf_counter() - self.t0
            eta = el / step * (self.total - step)
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            print(f"step {step}/{self.total} epoch {trainer.current_epoch} train_loss {loss:.4g} "
                  f"elapsed {el:.1f}s eta {eta:.1f}s", flush=True)


def _resume_point(out_dir: Path, signature: dict):
    """The latest checkpoint in out_dir written by a run with this signature (same data, model, training
    settings and schedule), or None. Checkpoints of any other run are ignored, never trusted."""
    # newest first (names are zero-padded steps): usually only the last checkpoint is read
    for path in sorted(out_dir.glob("step*.ckpt"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a checkpoint cut short by the interruption itself
            continue
        mine = [v for k, v in state.get("callbacks", {}).items() if k.startswith("CheckpointAndEvaluate")]
        if mine and mine[0].get("signature") == signature:
            return path, int(state["global_step"])
    return None


def evaluation_steps(total_steps: int, eval_points: int) -> list[int]:
    """Step 0, the last step and `eval_points` log-spaced steps in between: where train, validation and test
    metrics are measured (and early stopping can choose)."""
    return checkpoint_steps(total_steps, 1, eval_points)


def _test_record(module, data, loss: str, step: int) -> dict:
    """Per-test-point values and predictions of `module`, as the pointwise record of one predictor."""
    res = evaluate(module, data.x_test, data.y_test, loss, outputs=True)
    return {**{k: v.numpy() for k, v in res.items()}, "step": step}


def saved_checkpoint_steps(ckpt_path) -> set[int]:
    """The steps at which the run that wrote this checkpoint saved checkpoints (from its own state)."""
    state = models.load_checkpoint(ckpt_path)
    mine = [v for k, v in state.get("callbacks", {}).items() if k.startswith("CheckpointAndEvaluate")]
    if not mine:
        raise FileFormatError(f"{ckpt_path}: not a checkpoint of ntkscaling's training (no checkpoint schedule "
                              f"in it)")
    return {int(s) for s in mine[0]["saved"]}


def train_network(prepared_path, order_path, n: int, seed: int, out_dir, network: NetworkSettings,
                  train: TrainSettings = TrainSettings(), *, log_points=0, checkpoint_epochs=(), dataset="",
                  accelerator="auto", progress=None, resume=True, cache_f0=True, live_csv=None):
    """Train `network` on nested subset n of a prepared dataset as `train` says.

    Args:
        prepared_path, order_path: the prepared dataset (data.prepare) and its nested order (data.nested_order).
        n, seed: the subset size and the seed (the initialization depends on seed and width only).
        out_dir: where checkpoints go; a run restarted there (a requeued SLURM job, a re-run after a crash)
            resumes from the latest checkpoint of an identical run with the same numbers as an
            uninterrupted run; `resume=False` starts over.
        network, train: the settings (train.batch_size is capped at n).
        log_points, checkpoint_epochs: checkpoints at log-spaced steps and at these epochs (plus step 0 and
            the last step).
        cache_f0: False recomputes a centred network's f0 at every step instead of once (the plain
            definition; benchmarks/bench_training.py times both).
        live_csv: a file that gets one line per evaluation as training goes (`LiveRecord`), or None.

    Returns:
        (tidy rows, pointwise records, checkpoint paths by step). The pointwise records are
        {"network": last step, "network_best": best validation evaluation}, each with per-test-point `loss`,
        `mse`, `error`, the test predictions `pred` and its `step`.
    """
    with _torch_flags_restored(), _lightning_quiet():
        return _train(prepared_path, order_path, n, seed, out_dir, network, train, log_points, checkpoint_epochs,
                      dataset, accelerator, progress, resume, cache_f0, live_csv)


# Lightning's messages that say nothing about this run (advertising, hardware it does not use, warnings
# about choices made on purpose: f0's frozen copy is in eval mode, checkpoints are loaded weights-only)
LIGHTNING_NOISE = (r"The `srun` command is available", r"isinstance\(treespec, LeafSpec\)",
                   r"Found \d+ module\(s\) in eval mode", r"`weights_only` was not set", r"Tip: ",
                   r"GPU available: ", r"TPU available: ", r"HPU available: ", r"`Trainer.fit` stopped: ")


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


def _train(prepared_path, order_path, n, seed, out_dir, network, train, log_points, checkpoint_epochs, dataset,
           accelerator, progress, resume, cache_f0, live_csv):
    train = dataclasses.replace(train, batch_size=min(int(train.batch_size), int(n)))
    pl.seed_everything(int(seed) * 1_000_003 + int(n), workers=True, verbose=False)
    dm = SubsetDataModule(prepared_path, order_path, n, train.batch_size, seed=int(seed) * 1_000_003 + int(n))
    dm.setup()
    in_shape = tuple(dm.x_train.shape[1:])
    steps_per_epoch = math.ceil(n / train.batch_size)
    total = step_budget(n, train.batch_size, train.steps, train.epochs)
    max_epochs = math.ceil(total / steps_per_epoch)
    module = NetworkModule(network, train, in_shape, dm.n_classes, init_seed=seed, total_steps=total)
    schedule = checkpoint_steps(total, steps_per_epoch, log_points, checkpoint_epochs)
    eval_steps = evaluation_steps(total, train.eval_points)
    ident = {"dataset": dataset, "arch": network.arch, "width": network.width, "seed": seed, "method": "network",
             "n": n, "k": n}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signature = {"n": int(n), "seed": int(seed), "total_steps": total, "schedule": schedule,
                 "eval_steps": eval_steps, "hparams": dict(module.hparams), "prepared": md5sum(prepared_path),
                 "order": md5sum(order_path)}
    if network.center and cache_f0:  # f0 never changes: one pass instead of a second forward pass at every step (25% of the time)
        with torch.no_grad():
            dm.f0_train = module.net0(dm.x_train)
    cb = CheckpointAndEvaluate(schedule, out_dir, dm, train.loss, ident, signature, eval_steps,
                               SELECT_BY[train.select_by], live_csv)
    for stale in out_dir.glob(".step*.ckpt.tmp"):  # cut short by an interruption: never trusted
        stale.unlink()
    start = _resume_point(out_dir, signature) if resume else None
    if start is not None and start[1] < total:
        step = start[1]
        dm.sampler.set_epoch(step // steps_per_epoch)
        dm.sampler.skip_batches = step % steps_per_epoch
        print(f"resuming from {start[0]} (step {step} of {total})", flush=True)
    if progress is None:  # Lightning's bar on a terminal, plain lines in a log file
        progress = sys.stderr.isatty()
    callbacks = [cb] if progress else [cb, LineProgress(total)]
    trainer = pl.Trainer(max_steps=total, max_epochs=max_epochs, accelerator=accelerator, devices=1,
                         deterministic=True, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=progress, callbacks=callbacks,
                         default_root_dir=str(out_dir), num_sanity_val_steps=0)
    resume_from = str(start[0]) if start is not None and start[1] < total else None
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
    except DivergenceError as err:  # what was measured before, for a caller that records the divergence
        err.rows, err.step = cb.rows, trainer.global_step
        raise
    cb.record(trainer, module)  # the last step, whatever the schedule rounding
    records = {"network": _test_record(module, dm, train.loss, trainer.global_step)}
    best = cb.best
    module.load_state_dict(best["state"])
    records["network_best"] = _test_record(module, dm, train.loss, best["step"])
    rows = cb.rows + [{**r, "method": "network_best"} for r in cb.rows if r["step"] == best["step"]]
    return rows, records, cb.saved


def save_init_checkpoint(path, in_shape, out_dim: int, seed: int, network: NetworkSettings):
    """A Lightning checkpoint of the untrained network of `seed` (the same network as every run's step 0)."""
    module = NetworkModule(network, in_shape=tuple(in_shape), out_dim=out_dim, init_seed=seed)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_epochs=0, accelerator="cpu")
    trainer.strategy.connect(module)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp)
    os.replace(tmp, path)
    if is_workflow_file(path):
        record_digest(path)
