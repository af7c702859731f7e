"""Per-point losses and errors shared by network training and kernel regression.

`mse` is the mean over the C outputs of (f_c(x) - onehot(y)_c)^2, the same definition for the network's
training loss, its test loss and the kernel predictors' test MSE, so all curves are comparable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "cross_entropy")


def per_point_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(y, out.shape[-1]).to(out.dtype)
    return ((out - target) ** 2).mean(dim=-1)


def per_point_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return per_point_mse(out, y)
    if loss == "cross_entropy":
        return F.cross_entropy(out, y, reduction="none")
    raise ValueError(f"loss={loss!r} is unknown; expected one of {LOSSES}")


def per_point_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(dim=-1) != y).to(out.dtype)


@torch.no_grad()
def evaluate(net, x: torch.Tensor, y: torch.Tensor, loss: str, batch_size: int = 1024, device=None,
             outputs: bool = False) -> dict:
    """Per-point `loss`, `mse` and `error` (0/1) of `net` on (x, y), as float64 CPU tensors (and the
    outputs themselves as `pred` with `outputs`)."""
    was_training = net.training
    net.eval()
    device = device or next(net.parameters()).device
    parts = {"loss": [], "mse": [], "error": []} | ({"pred": []} if outputs else {})
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        out = net(xb)
        parts["loss"].append(per_point_loss(out, yb, loss).double().cpu())
        parts["mse"].append(per_point_mse(out, yb).double().cpu())
        parts["error"].append(per_point_error(out, yb).double().cpu())
        if outputs:
            parts["pred"].append(out.double().cpu())
    net.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}
