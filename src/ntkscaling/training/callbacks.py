"""What a training run records as it goes, each with one home: `evaluate_splits` (train, validation and test
metrics at a step, checked for divergence), `BestState` (the best validation evaluation, for early stopping),
`CheckpointAndEvaluate` (the schedule: evaluate at the evaluation steps, save at the checkpoint steps; its
state is saved in every checkpoint so a resumed run carries on), `LiveRecord` (a CSV to `tail -f`) and
`LineProgress` (progress lines for log files)."""
from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl

from ..files import atomic_path, tidy_row
from ..analysis.losses import evaluate
from .divergence import check_evaluation

SPLITS, METRICS = ("train", "val", "test"), ("loss", "mse", "error")


def evaluate_splits(module, data, loss: str, step: int, initial: dict) -> dict:
    """{split_metric: mean value} of `module` on each split of `data` at `step`; `initial` gets each metric's
    first value (step 0's) and is what divergence is judged against."""
    values = {}
    for split in SPLITS:
        res = evaluate(module, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), loss)
        for metric in METRICS:
            name, value = f"{split}_{metric}", float(res[metric].mean())
            check_evaluation(name, value, initial.setdefault(name, value), step)
            values[name] = value
    return values


class BestState:
    """The weights of the best validation evaluation so far, among trained networks only (after step 0: the
    untrained function would let a curve's smallest n sit at chance and fake a steep slope). Chosen on
    validation data, `select` names the metric; never on the test set."""

    def __init__(self, select: str):
        self.select, self.best = select, None  # best: {"step", "epoch", "value", "state"}

    def offer(self, step: int, epoch: float, values: dict, module) -> None:
        if step > 0 and (self.best is None or values[self.select] < self.best["value"]):
            self.best = {"step": step, "epoch": epoch, "value": values[self.select],
                         "state": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}}


class CheckpointAndEvaluate(pl.Callback):
    """Evaluate at each evaluation step (`evaluate_splits`, then `BestState`), save a checkpoint at each
    checkpoint step (written whole or not at all). The rows so far, the best state, the saved checkpoints and
    the run's signature are saved in every checkpoint and restored on resume."""

    def __init__(self, steps, out_dir, data, loss: str, ident: dict, signature: dict | None = None,
                 eval_steps=(), select: str = "val_mse", live_csv=None):
        self.steps, self.out_dir = set(steps), Path(out_dir)
        self.eval_steps = set(eval_steps) | self.steps
        self.data, self.loss, self.ident = data, loss, ident
        self.signature = signature or {}
        self.rows, self.saved, self.initial = [], {}, {}
        self.tracker = BestState(select)
        self.live = LiveRecord(live_csv) if live_csv else None

    @property
    def best(self):
        return self.tracker.best

    def state_dict(self):
        return {"rows": self.rows, "initial": self.initial, "signature": self.signature, "best": self.best,
                "saved": {int(k): str(v) for k, v in self.saved.items()}}

    def load_state_dict(self, state):
        self.rows, self.initial = list(state["rows"]), dict(state["initial"])
        self.saved = {int(k): Path(v) for k, v in state["saved"].items()}
        self.tracker.best = state.get("best")
        if self.live:  # resumed: the record restarts from what the checkpoint holds
            self.live.rewrite(self.rows)

    def evaluated(self, step: int) -> bool:
        return any(r["step"] == step for r in self.rows)

    def evaluate(self, trainer, module):
        step = trainer.global_step
        epoch = step / max(1, trainer.num_training_batches)
        values = evaluate_splits(module, self.data, self.loss, step, self.initial)
        self.rows += [tidy_row(**self.ident, epoch=epoch, step=step, metric=name, value=value)
                      for name, value in values.items()]
        if self.live:
            self.live.append(step, epoch, values)
        self.tracker.offer(step, epoch, values, module)

    def record(self, trainer, module):
        step = trainer.global_step
        if not self.evaluated(step):
            self.evaluate(trainer, module)
        if step not in self.steps or step in self.saved:
            return
        path = self.out_dir / f"step{step:08d}.ckpt"
        self.saved[step] = path  # before saving: the checkpoint's own state must say this step is done
        with atomic_path(path) as tmp:
            trainer.save_checkpoint(tmp)

    def on_train_start(self, trainer, module):
        self.record(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step in self.eval_steps:
            self.record(trainer, module)


class LiveRecord:
    """One CSV line per evaluation, written as training goes (`tail -f` follows it): step, epoch and the
    train/validation/test loss, MSE and error. A log, not an output: metrics.csv, written when the job
    ends, is what the workflow reads."""
    COLUMNS = ("step", "epoch") + tuple(f"{split}_{metric}" for split in SPLITS for metric in METRICS)

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
