"""The general empirical-NTK engine (``implementation='general'``): any torch module (other layers,
BatchNorm in eval mode, GELU, residual blocks, attention), within the memory budget.

`JacobianFeatures` is a feature source for entk_blocks.bounded_ntk: a sample's features are its Jacobian
w.r.t. every trainable parameter, (C', P) with C' = C logits (1 for the sum kind: the Jacobian of the summed
logits), computed a chunk of samples at a time by torch.func (vmap over samples of jacrev) and kept per parameter
tensor. Memory per sample: C' P retained, plus about as much again and C' times the module's activations
while a chunk is computed (an upper bound: 34.5 MB estimated, 18-24 MB measured per sample of ResNet-20 w16 on
32x32x3; benchmarks/README.md); bounded_ntk sizes chunks, panels and streamed column blocks to the budget
from these. Numbers: those of the Jacobian
contraction (entk._jacobian_ntk), block by block.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Features, Scratch
from ...nets.layers import logit_gram


def trainable_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the NTK differentiates: those that require gradients (a frozen copy of the initial
    network, as in a centred training module, is not trained and adds nothing)."""
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def _activation_elements(module: nn.Module, x_shape, dtype, device) -> tuple[int, int]:
    """(output size C, elements of every submodule's output for one sample): a forward pass with hooks."""
    total = [0]

    def count(_, __, out):
        if torch.is_tensor(out):
            total[0] += out[0].numel()
    hooks = [m.register_forward_hook(count) for m in module.modules() if m is not module]
    try:
        with torch.no_grad():
            out = module(torch.zeros((1,) + tuple(x_shape), dtype=dtype, device=device))
    finally:
        for h in hooks:
            h.remove()
    return out[0].numel(), total[0]


class JacobianFeatures:
    """The feature source (see entk_blocks) of any module for one kind: per-sample Jacobians."""

    # samples per vmap call: ResNet-20 w16's per-sample Jacobian took 17 ms in chunks of 16, 19 in chunks of 8,
    # 26-45 in chunks of 32 on a 2-core CPU (benchmarks/README.md)
    max_chunk = 16

    def __init__(self, module: nn.Module, kind: str, x_shape, dtype, device):
        self.module, self.kind = module, kind
        self.params = trainable_parameters(module)
        self.buffers = dict(module.named_buffers())
        self.sizes = [p.numel() for p in self.params.values()]
        self.logits, self.activations = _activation_elements(module, x_shape, dtype, device)
        self.rows_per_sample = 1 if kind == "sum" else self.logits

    def bytes_per_sample(self, x_shape, itemsize: int) -> tuple[int, int]:
        P, cp = sum(self.sizes), self.rows_per_sample
        # while a chunk is computed: torch.func's per-parameter Jacobians and its vmapped backward over the
        # C' outputs, holding up to C' copies of an activation's gradient beside the saved activations
        return cp * P * itemsize, (cp * P + cp * self.activations) * itemsize

    def alloc(self, n: int, dtype, device) -> Features:
        """One feature tensor per parameter tensor (n, C', its size)."""
        return [{"J": torch.empty((n, self.rows_per_sample, size), dtype=dtype, device=device)} for size in self.sizes]

    def _output(self, params, x):
        from torch.func import functional_call
        out = functional_call(self.module, (params, self.buffers), (x.unsqueeze(0),)).squeeze(0).reshape(-1)
        return out.sum(0, keepdim=True) if self.kind == "sum" else out

    def compute(self, x, into: Features, lo: int, scratch: Scratch) -> None:
        from torch.func import jacrev, vmap
        jac = vmap(jacrev(self._output), (None, 0))(self.params, x)  # name -> (n, C', *shape)
        rows = slice(lo, lo + len(x))
        for name, f in zip(self.params, into):
            f["J"][rows] = jac.pop(name).reshape(len(x), self.rows_per_sample, -1)

    def contract(self, f1: Features, f2: Features) -> torch.Tensor:
        K = None
        for a, b in zip(f1, f2):
            term = _chunked_gram(a["J"], b["J"], self.kind)
            K = term if K is None else K + term
        return K / self.logits if self.kind == "mean" else K


GRAM_CHUNK = 2 ** 16  # longest float32 inner product summed in one matmul


def _chunked_gram(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """layers.logit_gram with the inner dimension summed in chunks of GRAM_CHUNK: a matmul with few rows and
    millions of inner terms can accumulate them one after another, which in float32 lost 6e-4 of relative
    accuracy over 3M terms (measured; chunks of 65k keep it near 1e-6). The chunks are strided views, no
    copies."""
    n1, Cp, n2 = a.shape[0], a.shape[1], b.shape[0]
    if a[0].numel() <= GRAM_CHUNK:
        return logit_gram(a, b, kind)
    rows_a, rows_b = (n1 * Cp, n2 * Cp) if kind == "full" else (n1, n2)
    A, B = a.reshape(rows_a, -1), b.reshape(rows_b, -1)
    K = A[:, :GRAM_CHUNK] @ B[:, :GRAM_CHUNK].T
    for lo in range(GRAM_CHUNK, A.shape[1], GRAM_CHUNK):
        K.addmm_(A[:, lo:lo + GRAM_CHUNK], B[:, lo:lo + GRAM_CHUNK].T)
    return K.view(n1, Cp, n2, Cp).transpose(1, 2) if kind == "full" else K
