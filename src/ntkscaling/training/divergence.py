"""When training has diverged, decided in one place: a non-finite training loss at any step, or an evaluated
loss or MSE that is non-finite or `BLOWUP` times its value at initialization (dead ReLUs can keep the
training loss tame while the weights explode). A diverged run raises `DivergenceError`, which names the
setting to change; sweeps record it as an outcome instead of failing."""
from __future__ import annotations

import math

from ..files import InputError

BLOWUP = 1e4  # a loss this many times its value at initialization means training diverged


class DivergenceError(InputError, RuntimeError):
    """Training produced a NaN or infinite loss (a setting to change: reported without a traceback)."""


def check_training_loss(loss, epoch: int, step: int, train) -> None:
    """A batch's training loss (a number or a one-element tensor) at `step` of a run trained as `train`."""
    value = float(loss)
    if not math.isfinite(value):
        raise DivergenceError(f"training diverged: loss={value} at epoch {epoch}, step {step} "
                              f"(lr={train.lr}, optimizer={train.optimizer}); lower train.lr")


def check_evaluation(name: str, value: float, start: float, step: int) -> None:
    """An evaluated metric (`name`, e.g. val_mse) against its value at step 0; errors may be anything."""
    if not math.isfinite(value) or (not name.endswith("_error") and value > BLOWUP * max(start, 1e-12)):
        raise DivergenceError(f"training diverged: {name} is {value:.4g} at step {step} "
                              f"(it was {start:.4g} at step 0); lower train.lr")
