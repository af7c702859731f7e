"""The production empirical-NTK engine for networks built from nets/layers.py (``implementation='layerwise'``):
`LayerwiseFeatures`, the layers' own eNTK rules (features and their Gram terms) computed with fusions,
held within a memory budget by entk_blocks.bounded_ntk. It gives the numbers of the plain walk in
kernels/empirical/api.py, faster and in bounded memory; tests/test_entk.py holds it to that walk, the autograd Jacobian
and neural-tangents.

Fusions (each measured, see benchmarks/README.md):
- `_Tape`: a forward pass without autograd that keeps what the backward needs, and the backward written
  out per layer: each ReLU followed by a pooling folded into one broadcast multiply (its mask pre-scaled by
  the pooling's 1/4 or 1/(H W)), gradients written straight into the feature storage; any other layer
  falls back to its own `vjp`.
- A conv's per-sample weight gradients for every logit from one batched matmul per layer over its
  unfolded input (unfolded once per chunk by a strided copy into a reused buffer).
- The mean kind's readout-diagonal layer (`readout_diagonal`): one feature vector per sample instead of C.
- Feature storage is one buffer mapped in full when created (hostmem.populated_empty).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import hostmem
from .blocks import Features, Scratch
from ...nets.layers import kernel_from_features
from ...nets.models import Network, param_layers



def readout_diagonal(model: Network, kind: str) -> int | None:
    """For the mean kind: the index (among param layers) of the last hidden layer when only channel-wise
    layers (ReLU, pooling) lie between it and the Dense readout, else None.

    Its output gradient for logit c is s W_out[c, j] D[j, ...] with D = d(readout input)_j / d(output)_j
    the same for every logit, so sum_c J_c(x).J_c(x') = sum_j s^2 |W_out[:, j]|^2 (D(x) . D(x'))_j: one
    feature vector per sample, scaled per channel, instead of C (for Myrtle-5 this layer is 1/3 of the
    Gram)."""
    mods = list(model)
    params = [i for i, m in enumerate(mods) if getattr(m, "has_params", False)]  # any module may stand here
    if kind != "mean" or len(params) < 2 or params[-1] != len(mods) - 1 or not mods[-1].readout_factorizes:
        return None
    between = mods[params[-2] + 1:params[-1]]
    return len(params) - 2 if all(getattr(m, "channelwise", False) for m in between) else None


def unfold3x3(h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """F.unfold(h, 3, padding=1) ((n, C*9, H*W), same order), by one strided copy of the padded input
    (faster than F.unfold on CPU), into `out`'s storage when given: chunks reuse one buffer, where fresh
    tens-of-MB tensors each cost their page faults again."""
    n, c, H, W = h.shape
    hp = F.pad(h, (1, 1, 1, 1))
    s = hp.stride()
    patches = hp.as_strided((n, c, 3, 3, H, W), (s[0], s[1], s[2], s[3], s[2], s[3]))
    if out is None:
        return patches.reshape(n, c * 9, H * W)
    return out[:n * c * 9 * H * W].view(n, c, 3, 3, H, W).copy_(patches).view(n, c * 9, H * W)


def _alloc_features(model: Network, n: int, logits: int, dtype, device, diag: int | None) -> Features:
    """Feature storage for n samples: views into one buffer whose pages are mapped up front
    (hostmem.populated_empty), not faulted in one at a time by the matmuls writing them."""
    shapes = [{name: (n,) + shape for name, shape in m.feature_shapes(1 if j == diag else logits).items()}
              for j, m in enumerate(param_layers(model))]
    sizes = [math.prod(s) for layer in shapes for s in layer.values()]
    parts = iter(hostmem.populated_empty(sum(sizes), dtype, device).split(sizes))
    return [{name: next(parts).view(shape) for name, shape in layer.items()} for layer in shapes]


class _Tape:
    """A forward pass of a `Network` without autograd that keeps what its backward needs, and that backward,
    each step by the layer's own fast rule (`tape_save`, `tape_vjp`; faster than autograd's on CPU:
    benchmarks/README.md): the scaled weight formed once, and each ReLU followed by a pooling folded into one
    broadcast multiply (its mask pre-scaled by the pooling's factor; the pooling's `unpool`).

    inputs[j]: the input of the j-th parametrized layer; out: the network output."""

    def __init__(self, model: Network, x: torch.Tensor):
        self.mods = list(model)
        self.saved: list = [None] * len(self.mods)
        self.params = [i for i, m in enumerate(self.mods) if m.has_params]
        self.param_index = {i: j for j, i in enumerate(self.params)}
        self.inputs = []
        h = x
        for i, m in enumerate(self.mods):
            if m.has_params:
                self.inputs.append(h)
            self.saved[i] = m.tape_save(h, self.mods[i + 1] if i + 1 < len(self.mods) else None)
            h = m(h)
        self.out = h

    def _dest(self, i, dest):
        """Where the gradient computed at module i goes: dest(j) when module i - 1 is the j-th parametrized
        layer."""
        if dest is None or i == 0 or not self.mods[i - 1].has_params:
            return None
        return dest(self.param_index[i - 1])

    def backward(self, g: torch.Tensor, top: int, dest=None):
        """Yield (j, gradient at the output of the j-th parametrized layer), walking down from module `top`
        whose output gradient is g, to the first layer's output. `dest(j)`, when given, is a tensor (or
        None) of that gradient's shape that the last product forming it is written into (saves a copy)."""
        i = top
        while True:
            m, saved = self.mods[i], self.saved[i]
            if m.has_params:
                yield self.param_index[i], g
                if i == self.params[0]:
                    return
                g = m.tape_vjp(g, saved)
            elif m.pools and i > 0 and self.mods[i - 1].folds_pooling:  # its mask holds the factor
                g = m.unpool(g, self.saved[i - 1], saved, self._dest(i - 1, dest))
                i -= 1
            else:
                g = m.tape_vjp(g, saved, self._dest(i, dest))
            i -= 1


def _block_features(model: Network, x: torch.Tensor, kind: str, diag: int | None, into: Features,
                    lo: int, scratch: Scratch) -> None:
    """Features of the rows of x, written into rows lo.. of `into`; `diag`: the readout-diagonal layer (or
    None)."""
    n, rows = len(x), slice(lo, lo + len(x))
    with torch.no_grad():
        tape = _Tape(model, x)
        layers = [tape.mods[i] for i in tape.params]
        logits = 1 if kind == "sum" else tape.out.shape[1]
        # a conv's per-sample weight gradient is G^T unfold(A): unfold once, reuse for every logit; every
        # logit's output gradients of a conv layer (n, C', C_out, H*W), formed by the backward passes, then
        # one batched matmul per layer (faster than one per logit: each sample's unfolded input stays in the
        # cache for all logits)
        unfolded, conv_grads = {}, {}
        for j, (m, A) in enumerate(zip(layers, tape.inputs)):
            if m.unfolds:  # 3x3 convolutions with padding 1: the output has the input's H*W
                unfolded[j] = unfold3x3(A, scratch.get_buffer(j, A.numel() * 9, A)).transpose(1, 2)
                shape = (n, 1 if j == diag else logits, m.c_out, A.shape[2] * A.shape[3])
                conv_grads[j] = scratch.get_buffer(("G", j), math.prod(shape), A).view(shape)
            else:
                into[j]["A"][rows] = A

        def slot(j, c):  # where layer j's output gradient for logit c is kept
            return conv_grads[j][:, c] if j in conv_grads else into[j]["G"][rows, c]

        def write(j, c, g):  # layer j's output gradient g for logit c (or the diagonal layer's scaled D)
            dst = slot(j, c)
            if g.data_ptr() != dst.data_ptr():  # not already written there by the backward pass
                dst.copy_(g.view(dst.shape))

        top = len(tape.mods) - 1
        if diag is not None:
            readout = layers[-1]
            _, D = next(tape.backward(torch.ones_like(tape.inputs[-1]), top - 1))  # channel-wise layers only
            scale = readout.W_scale * readout.weight.pow(2).sum(0).sqrt()
            write(diag, 0, D * scale.view((1, -1) + (1,) * (D.dim() - 2)))
        # one backward pass per logit (a batched one measured slower on CPU: its tensors leave the cache)
        for c in range(logits):
            g = torch.zeros_like(tape.out)
            if kind == "sum":
                g.fill_(1.0)
            else:
                g[:, c] = 1.0
            for j, gj in tape.backward(g, top, lambda j: None if j == diag else slot(j, c)):
                if j != diag:
                    write(j, c, gj)
        for j, G in conv_grads.items():
            f, rows_out = into[j], G.shape[1] * layers[j].c_out
            torch.bmm(G.view(n, rows_out, -1), unfolded[j], out=f["J"][rows].view(n, rows_out, -1))
            if "Jb" in f:
                torch.sum(G, dim=3, out=f["Jb"][rows])


def bytes_per_sample(model: Network, x_shape, logits: int, itemsize: int,
                     diag: int | None = None) -> tuple[int, int]:
    """(retained, transient) memory per sample of the layerwise features.

    retained: what a block keeps for its contractions (each layer's `feature_shapes`); transient: the tape
    (activations, ReLU masks), every conv's unfolded input and every logit's output gradients (held through
    the logit loop) and one backward pass's gradients."""
    p = next(model.parameters())
    retained, acts, grads, unfolded, j = 0, 0, 0, 0, 0
    h = torch.zeros((1,) + tuple(x_shape), dtype=p.dtype, device=p.device)
    with torch.no_grad():
        for m in model:
            if m.has_params:
                cp = 1 if j == diag else logits
                retained += sum(math.prod(s) for s in m.feature_shapes(cp).values())
                if m.unfolds:
                    unfolded += m.unfolded_elements(cp, h.shape[2], h.shape[3])
                j += 1
            h = m(h)
            acts += 2 * h[0].numel()  # the tape: each module's output and its saved mask or input
            if m.has_params:
                grads += 2 * h[0].numel()  # one logit's output gradient and the product forming the next
    return retained * itemsize, (acts + grads + unfolded) * itemsize




class LayerwiseFeatures:
    """The feature source (see entk_blocks) of a sequence of nets/layers.py layers (`models.layerwise_problem`:
    a `Network` or any nn.Sequential of them) for one kind: each parametrized layer's features."""

    def __init__(self, model: Network, kind: str):
        self.model, self.kind = model, kind
        self.params = param_layers(model)
        self.logits = self.params[-1].fan_out
        self.diag = readout_diagonal(model, kind)

    def bytes_per_sample(self, x_shape, itemsize: int) -> tuple[int, int]:
        logits = 1 if self.kind == "sum" else self.logits
        return bytes_per_sample(self.model, x_shape, logits, itemsize, self.diag)

    def alloc(self, n: int, dtype, device) -> Features:
        return _alloc_features(self.model, n, 1 if self.kind == "sum" else self.logits, dtype, device, self.diag)

    def compute(self, x, into: Features, lo: int, scratch: Scratch) -> None:
        _block_features(self.model, x, self.kind, self.diag, into, lo, scratch)

    def contract(self, f1: Features, f2: Features) -> torch.Tensor:
        return kernel_from_features(self.params, f1, f2, self.kind)
