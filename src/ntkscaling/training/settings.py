"""What a training run is, without torch: the network and training records (the config's `model` and
`train` sections), the step budget, the learning-rate schedule and the steps where a run evaluates and
checkpoints. The config check and job sizing read these, so they never import torch."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine", "linear")
SELECT_BY = {"mse": "val_mse", "error": "val_error"}  # validation metric of early stopping


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
        low, high = OUTPUT_SCALE_RANGE
        if not low <= self.output_scale <= high:
            raise ValueError(f"model.output_scale={self.output_scale!r}: expected a number in [{low:g}, {high:g}] "
                             f"(what float32 training carries: see OUTPUT_SCALE_RANGE)")
        if self.output_scale != 1.0 and not self.center:
            raise ValueError(f"model.output_scale={self.output_scale!r} needs model.center: true (an uncentred "
                             f"network scaled by alpha starts at alpha * f0, unbounded as alpha grows)")


def linearized_problem(optimizer: str, weight_decay: float) -> str | None:
    """Why the linearized network (training/linearized.py) cannot be trained with these settings, or None: its
    SGD is a kernel flow in function space; Adam's per-parameter scaling and decay of the raw parameters are
    not."""
    if optimizer != "sgd":
        return f"train.optimizer={optimizer!r}: Adam's per-parameter scaling is not a kernel flow"
    if weight_decay:
        return f"train.weight_decay={weight_decay}: decay of the raw parameters is not a kernel flow"
    return None


VALIDATION_KEYS = ("val_mse", "val_error")  # a network's validation scores, in its pointwise record


# alpha within what float32 carries. The prediction alpha (f - f0) is a difference of two float32 outputs of
# size |f0| ~ 1, resolved to about 6e-8 |f0|: times alpha 1e4 that is 1e-3 of a unit label (at 1e6 every
# prediction was a multiple of 0.12, measured). Below 1e-4 the loss / alpha^2 and the parameters' O(1/alpha)
# steps leave float32's range before any learning rate could be right. The schema states the same bounds.
OUTPUT_SCALE_RANGE = (1e-4, 1e4)


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
        from ..analysis.losses import LOSSES  # with the losses themselves (torch): only a run that trains builds this
        for name, known in (("loss", LOSSES), ("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
                            ("select_by", tuple(SELECT_BY))):
            if getattr(self, name) not in known:
                key = name if name == "select_by" else f"train.{name}"  # select_by is a top-level config key
                raise ValueError(f"{key}={getattr(self, name)!r} is unknown; expected one of {known}")

    @classmethod
    def from_config(cls, train: dict, select_by: str = "mse") -> "TrainSettings":
        return cls(select_by=select_by, **{f.name: train[f.name] for f in dataclasses.fields(cls)
                                           if f.name != "select_by" and f.name in train})


def step_budget(n: int, batch_size: int, steps=None, epochs: int = 100) -> int:
    """Optimizer steps of a training run on n examples: `steps` whatever n when set, else `epochs` passes of
    ceil(n / batch_size) batches."""
    return int(steps) if steps else int(epochs) * math.ceil(n / batch_size)


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


def checkpoint_steps(total_steps: int, steps_per_epoch: int, log_points: int = 0, epochs=()) -> list[int]:
    """Step 0, the last step, `log_points` log-spaced steps in between, and the asked epoch boundaries."""
    steps = {0, int(total_steps)}
    if log_points > 0 and total_steps > 1:
        steps |= {int(round(s)) for s in np.logspace(0, math.log10(total_steps), log_points)}
    steps |= {int(e) * steps_per_epoch for e in epochs if 0 < int(e) * steps_per_epoch <= total_steps}
    return sorted(steps)


def velocity_gap_steps(total_steps: int, gap: float) -> int:
    """The fixed step gap of the kernel velocity: `gap` (evolution.velocity_gap) of the step budget, at least 1."""
    return max(1, int(round(gap * total_steps)))


def with_velocity_partners(steps, total_steps: int, gap: int) -> list[int]:
    """A checkpoint schedule with each step's partner `gap` steps later (where it is within the budget): the
    pairs whose angle is the fixed-gap velocity (`velocity_pairs`)."""
    return sorted(set(steps) | {s + gap for s in steps if s + gap <= total_steps})


def velocity_pairs(steps, gap: int) -> list[tuple[int, int]]:
    """(t, t + gap) pairs among the checkpoint `steps`, earliest first and never overlapping, so that at most
    one kernel waits for its partner at a time."""
    have, pairs, free_from = set(steps), [], -1
    for t in sorted(have):
        if t >= free_from and t + gap in have:
            pairs.append((t, t + gap))
            free_from = t + gap
    return pairs


def evaluation_steps(total_steps: int, eval_points: int) -> list[int]:
    """Step 0, the last step and `eval_points` log-spaced steps in between: where train, validation and test
    metrics are measured (and early stopping can choose)."""
    return checkpoint_steps(total_steps, 1, eval_points)
