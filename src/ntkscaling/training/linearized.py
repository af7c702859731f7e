"""The linearized network: the first-order Taylor model of the network around its initialization, trained by
the same optimizer, batches and learning-rate schedule as the network itself (Lee et al. 2019, "Wide neural
networks of any depth evolve as linear models under gradient descent").

It is what the network becomes in the lazy limit under the *same* training: network-vs-linearized isolates
feature learning from the differences between SGD with early stopping and ridge regression. For a model
linear in its parameters, SGD is exact in function space with the eNTK at initialization. With the centred
output g = alpha (f - f0) and the loss divided by alpha^2, one SGD step with momentum mu is

    u(x) <- mu u(x) + (1/|B|) sum_{i in B} Theta(x, x_i) dl/dg(x_i),     g(x) <- g(x) - lr_t u(x),

alpha-free, with u = alpha J(x) b the momentum buffer b seen through the Jacobian. Theta is the eNTK's `full`
kind (every pair of logits: the exact linearization) or its `mean` kind times the identity over logits (the
logits' cross terms left out, as kernel regression with that kind leaves them). An uncentred network starts at
its initial outputs f0 (`prior`). Weight decay and Adam are not linear in function space: refused.

The plain definition of the dynamics above, on the training, validation and test rows of one nested subset;
evaluated and chosen as the network is (validation score at its evaluation steps, never step 0).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .batches import EpochBatches
from .settings import SELECT_BY, TrainSettings, evaluation_steps, linearized_problem, lr_factor, step_budget

KINDS = ("mean", "full")  # the sum kind's kernel is that of the summed logits: no per-logit dynamics


class LinearizedError(ValueError):
    """Training settings under which the linearized network is not a kernel flow in function space."""


def supported(train: TrainSettings, kind: str) -> str | None:
    """Why the linearized network cannot be trained as `train` says with a `kind` kernel, or None."""
    if kind not in KINDS:
        return f"the {kind} kind's kernel has no per-logit dynamics (use mean or full)"
    return linearized_problem(train.optimizer, train.weight_decay)


def _loss_grad(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """d(per-point loss)/d(outputs), per point (the training loss is their mean over the batch)."""
    target = torch.nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
    if loss == "mse":
        return 2.0 * (out - target) / out.shape[-1]
    return torch.softmax(out, dim=-1) - target


def train_linearized(K, y: np.ndarray, n: int, rows: dict, seed: int, train: TrainSettings, n_classes: int,
                     prior: np.ndarray | None = None) -> dict:
    """Train the linearized network on nested subset n; per-test-point records as the network's.

    Args:
        K: the eNTK at initialization on the kernel rows, (R, R) for the mean kind or (R, R, C, C) for full.
        y: labels of the kernel rows; rows: {'train', 'val', 'test'} slices of them (training rows first).
        n, seed: the subset and the run's seed (the batches are the network's: EpochBatches of seed and n).
        train: the network's training settings; prior: f0 on the kernel rows (an uncentred network), or None.

    Returns:
        {"step", "loss", "mse", "error", "pred", "val_mse", "val_error"} of the state with the best validation
        score among its evaluation steps after step 0 (the network_best rule), per test point, and
        "pred_last", the test predictions at the last step (the network's `network` record's step).
    """
    from ..analysis.losses import per_point_error, per_point_loss, per_point_mse
    problem = supported(train, "full" if np.ndim(K) == 4 else "mean")
    if problem:
        raise LinearizedError(f"linearized network: {problem}")
    batch = min(int(train.batch_size), n)
    idx = np.r_[np.arange(n), np.arange(rows["val"].start, rows["val"].stop),
                np.arange(rows["test"].start, rows["test"].stop)]
    K_all = torch.from_numpy(np.asarray(K[np.ix_(idx, np.arange(n))], dtype=np.float64))  # (rows, n[, C, C])
    labels = torch.from_numpy(np.asarray(y)[idx]).long()
    out = torch.zeros((len(idx), n_classes), dtype=torch.float64)
    if prior is not None:
        out += torch.from_numpy(np.asarray(prior, dtype=np.float64)[idx])
    u = torch.zeros_like(out)
    val = slice(n, n + (rows["val"].stop - rows["val"].start))
    test = slice(val.stop, len(idx))
    total = step_budget(n, batch, train.steps, train.epochs)
    evals = set(evaluation_steps(total, train.eval_points))
    select = SELECT_BY[train.select_by].removeprefix("val_")
    sampler = EpochBatches(n, seed * 1_000_003 + n, batch)
    best, step, per_epoch = None, 0, math.ceil(n / batch)
    for epoch in range(math.ceil(total / per_epoch)):
        sampler.set_epoch(epoch)
        for b in sampler:
            if step >= total:
                break
            g = _loss_grad(out[b], labels[b], train.loss) / len(b)  # (|B|, C)
            if K_all.ndim == 2:
                force = K_all[:, b] @ g
            else:
                force = torch.einsum("ibcd,bd->ic", K_all[:, b], g)
            u = train.momentum * u + force
            out -= train.lr * lr_factor(step, total, train.lr_schedule, train.warmup) * u
            step += 1
            if step in evals:
                score = (per_point_mse if select == "mse" else per_point_error)(out[val], labels[val]).mean()
                if best is None or score < best[0]:
                    best = (float(score), step, out.clone())
    if best is None:  # no evaluation after step 0 (a one-step budget): the last state
        best = (math.nan, step, out.clone())
    _, step, state = best
    record = {"step": step, "pred": state[test].numpy(), "pred_last": out[test].numpy()}
    for name, fn in (("loss", lambda o, t: per_point_loss(o, t, train.loss)), ("mse", per_point_mse),
                     ("error", per_point_error)):
        record[name] = fn(state[test], labels[test]).numpy()
    record["val_mse"] = float(per_point_mse(state[val], labels[val]).mean())
    record["val_error"] = float(per_point_error(state[val], labels[val]).mean())
    return record
