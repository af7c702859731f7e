"""Empirical NTK of a network (at any checkpoint): the kernel stage of the pipeline.

K(x, x') = sum over parameters of J_c(x) J_d(x')^T, with gradients taken w.r.t. the model's raw parameters
(NTK parameterization puts the scale in the forward pass). Kinds, as in neural-tangents:

- ``mean``: (1/C) sum_c J_c(x).J_c(x')   -> (n1, n2)   (neural-tangents' trace_axes convention)
- ``sum``:  the NTK of the summed logits -> (n1, n2)   (= sum over c, d of the full block)
- ``full``: J_c(x).J_d(x')                -> (n1, n2, C, C)

Implementations (all return the same numbers):

- ``jacobian``: the plain reference; per-sample Jacobians with torch.func (jacrev + vmap), then contraction.
- ``layerwise``: the production path for networks built by models.py. One forward pass records each
  layer's input A and C backward passes (written out per module, `_Tape`) give the per-sample gradients G
  of the logits w.r.t. each layer's output. A Dense layer contributes (W_scale^2 A A'^T + b_scale^2) *
  (G G'^T), so an MLP needs no Jacobian;
  a Conv layer's per-sample weight gradients W_scale * G^T unfold(A), for every logit at once, are formed by
  one batched matmul per layer, written straight into their place in sample-major storage, and contracted
  by a matmul (the logit sum of the mean and sum kinds folded into its inner dimension); a Conv's biases
  add features only when b_scale is not 0. The feature storage is one buffer mapped in full when created.
  For the mean kind the last hidden layer (only ReLU and pooling between it and the readout) needs one
  feature vector per sample instead of C: its output gradients are the readout weights times one map.
  Features are held within `max_memory_gb`: all rows when they fit, else a panel of rows at a time against
  streamed blocks of the later columns (each row's features computed about 1 + (k-1)/2 times for k
  panels). When x2 is x1 only the upper triangle of Gram blocks is computed.

Both run in full float32 on GPUs (`ieee_float32`: no TF32 convolutions or matmuls).
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import hostmem
from .io import Progress
from .models import Conv, Dense, FlattenNHWC, GlobalAvgPool, Network

KINDS = ("mean", "sum", "full")
IMPLEMENTATIONS = ("auto", "jacobian", "layerwise")


# --------------------------------------------------------------------------------------------- reference
def _jacobian_ntk(model, x1, x2, kind):
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    def jac(x):
        J = vmap(jacrev(f), (None, 0))(params, x)
        return torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in J.values()], dim=2)  # (n, C, P)

    J1 = jac(x1)
    J2 = J1 if x2 is None else jac(x2)
    if kind == "mean":
        return torch.einsum("acp,bcp->ab", J1, J2) / J1.shape[1]
    if kind == "sum":
        return J1.sum(1) @ J2.sum(1).T
    return torch.einsum("acp,bdp->abcd", J1, J2)


# --------------------------------------------------------------------------------------------- layerwise
@dataclass
class _LayerFeatures:
    """What one layer contributes for a block of samples (C' = 1 for the sum kind and for the mean kind's
    readout-diagonal layer, else C logits).

    Sample-major layouts (n, C', ...): a block of rows is a contiguous slice, and the mean and sum kinds'
    Gram over logits and parameters is one matmul with the logit axis folded into the inner dimension."""
    dense_A: torch.Tensor | None = None   # (n, fan_in) layer inputs (Dense)
    G: torch.Tensor | None = None         # (n, C', fan_out) output gradients (Dense)
    J: torch.Tensor | None = None         # (n, C', C_out * C_in * 9) per-sample weight gradients, no W_scale
    Jb: torch.Tensor | None = None        # (n, C', C_out) per-sample bias gradients without b_scale (Conv;
    #                                       None when b_scale is 0: the biases then add nothing to the kernel)
    W_scale: float = 1.0
    b_scale: float = 1.0


CHANNELWISE = (nn.ReLU, nn.AvgPool2d, GlobalAvgPool)  # FlattenNHWC is not: it mixes channels of images


def _readout_diagonal(model: Network, kind: str) -> int | None:
    """For the mean kind: the index (among param layers) of the last hidden layer when only channel-wise
    modules (ReLU, pooling) lie between it and the Dense readout, else None.

    Its output gradient for logit c is s W_out[c, j] D[j, ...] with D = d(readout input)_j / d(output)_j
    the same for every logit, so sum_c J_c(x).J_c(x') = sum_j s^2 |W_out[:, j]|^2 (D(x) . D(x'))_j: one
    feature vector per sample, scaled per channel, instead of C (for Myrtle-5 this layer is 1/3 of the
    Gram)."""
    mods = list(model)
    params = [i for i, m in enumerate(mods) if isinstance(m, (Dense, Conv))]
    if kind != "mean" or len(params) < 2 or params[-1] != len(mods) - 1 or not isinstance(mods[-1], Dense):
        return None
    return len(params) - 2 if all(isinstance(m, CHANNELWISE) for m in mods[params[-2] + 1:params[-1]]) else None


def _unfold3x3(h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """F.unfold(h, 3, padding=1) ((n, C*9, H*W), same order), by one strided copy of the padded input
    (1.5x faster than F.unfold on CPU), into `out`'s storage when given: chunks reuse one buffer, where
    fresh tens-of-MB tensors each cost their page faults again."""
    n, c, H, W = h.shape
    hp = F.pad(h, (1, 1, 1, 1))
    s = hp.stride()
    patches = hp.as_strided((n, c, 3, 3, H, W), (s[0], s[1], s[2], s[3], s[2], s[3]))
    if out is None:
        return patches.reshape(n, c * 9, H * W)
    return out[:n * c * 9 * H * W].view(n, c, 3, 3, H, W).copy_(patches).view(n, c * 9, H * W)


def _alloc_features(model: Network, n: int, Cp: int, dtype, device, diag: int | None) -> list[_LayerFeatures]:
    """Feature storage for n samples: views into one buffer whose pages are mapped up front
    (hostmem.populated_empty), not faulted in one at a time by the matmuls writing them."""
    shapes = []
    for i, m in enumerate(model.param_layers()):
        cp = 1 if i == diag else Cp
        if isinstance(m, Dense):
            shapes.append({"dense_A": (n, m.fan_in), "G": (n, cp, m.fan_out)})
        else:
            bias = {"Jb": (n, cp, m.c_out)} if _bias_features(m) else {}
            shapes.append({"J": (n, cp, m.c_out * m.c_in * 9)} | bias)
    sizes = [math.prod(s) for layer in shapes for s in layer.values()]
    parts = iter(hostmem.populated_empty(sum(sizes), dtype, device).split(sizes))
    return [_LayerFeatures(**{name: next(parts).view(shape) for name, shape in layer.items()},
                           W_scale=m.W_scale, b_scale=m.b_scale) for m, layer in zip(model.param_layers(), shapes)]


def _bias_features(m: Conv) -> bool:
    """Whether a Conv's biases add features: with b_scale 0 they add nothing to the kernel."""
    return m.b_scale != 0


def _mul_into(g: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """g * mask (mask of the product's shape), written into `out`'s storage when given."""
    return g * mask if out is None else torch.mul(g, mask, out=out.view(mask.shape))


class _Tape:
    """A forward pass of a models.py network without autograd that keeps what its backward needs, and that
    backward written out per module (measured 1.15x faster than autograd's for Myrtle-5 on CPU): the
    transposed conv as conv_transpose2d, and each ReLU followed by a pooling folded into one broadcast
    multiply (its mask pre-scaled by the pooling's 1/4 or 1/(H W)).

    inputs[j]: the input of the j-th Dense/Conv layer; out: the network output."""

    def __init__(self, model: Network, x: torch.Tensor):
        self.mods = list(model)
        self.saved: list = [None] * len(self.mods)
        self.params = [i for i, m in enumerate(self.mods) if isinstance(m, (Dense, Conv))]
        self.param_index = {i: j for j, i in enumerate(self.params)}
        self.inputs = []
        h = x
        for i, m in enumerate(self.mods):
            nxt = self.mods[i + 1] if i + 1 < len(self.mods) else None
            if isinstance(m, (Dense, Conv)):
                self.inputs.append(h)
                self.saved[i] = m.weight * m.W_scale
            elif isinstance(m, nn.ReLU):
                mask = (h > 0).to(h.dtype)
                if isinstance(nxt, nn.AvgPool2d):
                    mask.mul_(0.25)
                elif isinstance(nxt, GlobalAvgPool):
                    mask.mul_(1.0 / (h.shape[2] * h.shape[3]))
                self.saved[i] = mask
            else:
                self.saved[i] = h.shape
            h = m(h)
        self.out = h

    def _dest(self, i, dest):
        """Where the gradient computed at module i goes: dest(j) when module i - 1 is the j-th Dense/Conv."""
        if dest is None or i == 0 or not isinstance(self.mods[i - 1], (Dense, Conv)):
            return None
        return dest(self.param_index[i - 1])

    def backward(self, g: torch.Tensor, top: int, dest=None):
        """Yield (j, gradient at the output of the j-th Dense/Conv layer), walking down from module `top`
        whose output gradient is g, to the first layer's output. `dest(j)`, when given, is a tensor (or
        None) of that gradient's shape that the last product forming it is written into (saves a copy)."""
        i = top
        while True:
            m, saved = self.mods[i], self.saved[i]
            fused = i > 0 and isinstance(self.mods[i - 1], nn.ReLU) and isinstance(m, (nn.AvgPool2d, GlobalAvgPool))
            if isinstance(m, (Dense, Conv)):
                yield self.param_index[i], g
                if i == self.params[0]:
                    return
                g = g @ saved if isinstance(m, Dense) else F.conv_transpose2d(g, saved, padding=1)
            elif isinstance(m, nn.ReLU):
                g = _mul_into(g, saved, self._dest(i, dest))
            elif isinstance(m, nn.AvgPool2d):
                if not (m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2)) and m.padding in (0, (0, 0))):
                    raise ValueError(f"the layerwise eNTK supports 2x2/2 average pooling, got {m}")
                n, c, H, W = saved
                if fused:  # the ReLU's mask holds the 1/4
                    # widen the rows first: a broadcast over a last axis of 2 is 1.1-2x slower
                    g = g[..., None].expand(n, c, H // 2, W // 2, 2).reshape(n, c, H // 2, 1, W)
                    mask = self.saved[i - 1].view(n, c, H // 2, 2, W)
                    g = _mul_into(g, mask, self._dest(i - 1, dest)).view(saved)
                    i -= 1
                else:
                    g = (g * 0.25)[:, :, :, None, :, None].expand(n, c, H // 2, 2, W // 2, 2).reshape(saved)
            elif isinstance(m, GlobalAvgPool):
                if fused:  # the ReLU's mask holds the 1/(H W)
                    g = _mul_into(g[:, :, None, None], self.saved[i - 1], self._dest(i - 1, dest))
                    i -= 1
                else:
                    g = (g / (saved[2] * saved[3]))[:, :, None, None].expand(saved).contiguous()
            elif isinstance(m, FlattenNHWC):
                if len(saved) == 4:
                    n, c, H, W = saved
                    g = g.reshape(n, H, W, c).permute(0, 3, 1, 2).contiguous()
            else:
                raise ValueError(f"the layerwise eNTK has no backward rule for {type(m).__name__}")
            i -= 1


def _block_features(model: Network, x: torch.Tensor, kind: str, diag: int | None, into: list[_LayerFeatures],
                    lo: int, scratch: dict) -> None:
    """Features of the rows of x, written into rows lo.. of `into`; `diag`: the readout-diagonal layer (or
    None); `scratch` keeps the unfold and gradient buffers between calls."""
    n = len(x)

    def buffer(key, size, like):
        if key not in scratch or scratch[key].numel() < size:
            scratch[key] = torch.empty(size, dtype=like.dtype, device=like.device)
        return scratch[key][:size]
    with torch.no_grad():
        tape = _Tape(model, x)
        layers = [tape.mods[i] for i in tape.params]
        # a conv's per-sample weight gradient is G^T unfold(A): unfold once, reuse for every logit
        unfolded = [A if isinstance(m, Dense) else _unfold3x3(A, buffer(j, A.numel() * 9, A)).transpose(1, 2)
                    for j, (m, A) in enumerate(zip(layers, tape.inputs))]
        Cp = 1 if kind == "sum" else tape.out.shape[1]
        rows = slice(lo, lo + n)
        # every logit's output gradients of a conv layer, (n, C', C_out, H*W): one batched matmul per layer
        # forms all its per-sample weight gradients (measured 1.1-1.5x the rate of one per logit: each
        # sample's unfolded input stays in the cache for all logits)
        grads = {}
        for j, (m, A) in enumerate(zip(layers, tape.inputs)):
            if isinstance(m, Conv):  # 3x3 convolutions with padding 1: the output has the input's H*W
                shape = (n, 1 if j == diag else Cp, m.c_out, A.shape[2] * A.shape[3])
                grads[j] = buffer(("G", j), shape[0] * shape[1] * shape[2] * shape[3], A).view(shape)

        def slot(j, c):  # where layer j's output gradient for logit c is kept
            return into[j].G[rows, c] if isinstance(layers[j], Dense) else grads[j][:, c]

        def write(j, c, g):  # layer j's output gradient g for logit c (or the diagonal layer's scaled D)
            dst = slot(j, c)
            if g.data_ptr() != dst.data_ptr():  # not already written there by the backward pass
                dst.copy_(g.view(dst.shape))

        for f, m, A in zip(into, layers, unfolded):
            if isinstance(m, Dense):
                f.dense_A[rows] = A
        top = len(tape.mods) - 1
        if diag is not None:
            readout = layers[-1]
            ones = torch.ones_like(tape.inputs[-1])
            _, D = next(tape.backward(ones, top - 1))  # channel-wise modules only: the next layer is `diag`
            scale = readout.W_scale * readout.weight.pow(2).sum(0).sqrt()
            write(diag, 0, D * scale.view((1, -1) + (1,) * (D.dim() - 2)))
        # one backward pass per logit (a batched one measured slower on CPU: its tensors leave the cache)
        for c in range(Cp):
            g = torch.zeros_like(tape.out)
            if kind == "sum":
                g.fill_(1.0)
            else:
                g[:, c] = 1.0
            for j, gj in tape.backward(g, top, lambda j: None if j == diag else slot(j, c)):
                if j != diag:
                    write(j, c, gj)
        for j, G in grads.items():
            f, cp = into[j], G.shape[1]
            torch.bmm(G.view(n, cp * layers[j].c_out, -1), unfolded[j], out=f.J[rows].view(n, cp * layers[j].c_out, -1))
            if f.Jb is not None:
                torch.sum(G, dim=3, out=f.Jb[rows])


def _contract(f1: list[_LayerFeatures], f2: list[_LayerFeatures], kind: str, n_logits: int) -> torch.Tensor:
    """Sum over layers of the block pair's kernel: (n1, n2), or (n1, n2, C, C) for the full kind."""
    K = None

    def gram(a, b):  # (n1, C', D), (n2, C', D) -> per-logit-pair or logit-summed inner products
        n1, Cp, n2 = a.shape[0], a.shape[1], b.shape[0]
        if kind == "full":
            return (a.reshape(n1 * Cp, -1) @ b.reshape(n2 * Cp, -1).T).view(n1, Cp, n2, Cp).transpose(1, 2)
        return a.reshape(n1, -1) @ b.reshape(n2, -1).T

    for a, b in zip(f1, f2):
        if a.J is not None:
            term = a.W_scale ** 2 * gram(a.J, b.J)
            if a.Jb is not None:
                term += a.b_scale ** 2 * gram(a.Jb, b.Jb)
        else:
            lin = (a.W_scale ** 2) * (a.dense_A @ b.dense_A.T) + a.b_scale ** 2
            term = (lin[:, :, None, None] if kind == "full" else lin) * gram(a.G, b.G)
        K = term if K is None else K + term
    return K / n_logits if kind == "mean" else K


def _bytes_per_sample(model: Network, x_shape, C: int, itemsize: int, diag: int | None = None) -> tuple[int, int]:
    """(retained, transient) memory per sample of the layerwise features.

    retained: what a block keeps for its contractions (Dense inputs and output gradients, Conv per-sample
    gradients); transient: the tape (activations, ReLU masks), every conv's unfolded input and every logit's
    output gradients (held through the logit loop) and one backward pass's gradients."""
    p = next(model.parameters())
    retained, acts, grads, unfolded, i = 0, 0, 0, 0, 0
    h = torch.zeros((1,) + tuple(x_shape), dtype=p.dtype, device=p.device)
    with torch.no_grad():
        for m in model:
            cp = 1 if i == diag else C
            if isinstance(m, Dense):
                retained += h[0].numel() + cp * m.fan_out
                i += 1
            elif isinstance(m, Conv):
                retained += cp * (m.c_out * m.c_in * 9 + (m.c_out if _bias_features(m) else 0))
                unfolded += (m.c_in * 9 + cp * m.c_out) * h.shape[2] * h.shape[3]
                i += 1
            h = m(h)
            acts += 2 * h[0].numel()  # the tape: each module's output and its saved mask or input
            if isinstance(m, (Dense, Conv)):
                grads += 2 * h[0].numel()  # one logit's output gradient and the product forming the next
    return retained * itemsize, (acts + grads + unfolded) * itemsize


FEATURE_CHUNK = 32    # samples per forward/backward: per-sample cost grows with larger chunks (caches)
CONTRACT_BLOCK = 256  # rows per Gram block when all features are held: big, efficient matmuls
MIN_DIAGONAL_BLOCK = 64  # smaller Gram blocks are bound by memory traffic, not flops
DEFAULT_MEMORY_GB = 4.0  # max_memory_gb when none is given (also a CPU job's without a memory request)


def _slice(feats: list[_LayerFeatures], lo: int, hi: int) -> list[_LayerFeatures]:
    def rows(t):
        return None if t is None else t[lo:hi]
    return [_LayerFeatures(rows(f.dense_A), rows(f.G), rows(f.J), rows(f.Jb), f.W_scale, f.b_scale) for f in feats]


def _all_features(model, x, kind, diag, chunk, tick=None):
    """Features of every row of x, computed `chunk` rows at a time straight into preallocated tensors;
    `tick(rows done)` after each chunk."""
    Cp = 1 if kind == "sum" else model.param_layers()[-1].fan_out
    out = _alloc_features(model, len(x), Cp, x.dtype, x.device, diag)
    scratch = {}
    for lo in range(0, len(x), chunk):
        _block_features(model, x[lo:lo + chunk], kind, diag, out, lo, scratch)
        if tick is not None:
            tick(min(lo + chunk, len(x)))
    return out


def _layerwise_ntk(model, x1, x2, kind, max_memory_gb, progress):
    C = model.param_layers()[-1].fan_out
    Cp = 1 if kind == "sum" else C
    diag = _readout_diagonal(model, kind)
    retained, transient = _bytes_per_sample(model, x1.shape[1:], Cp, x1.element_size(), diag)
    sym = x2 is None
    xs2 = x1 if sym else x2
    n1, n2 = len(x1), len(xs2)
    budget = (max_memory_gb or DEFAULT_MEMORY_GB) * 1e9
    out_bytes = n1 * n2 * x1.element_size() * (C * C if kind == "full" else 1)
    avail = max(budget - out_bytes, 0)
    K = torch.empty((n1, n2, C, C) if kind == "full" else (n1, n2), dtype=x1.dtype, device=x1.device)
    chunk = max(1, min(FEATURE_CHUNK, int(avail // (retained + transient))))

    def fill(i0, j0, fi, fj):
        blk = _contract(fi, fj, kind, C)
        i1, j1 = i0 + blk.shape[0], j0 + blk.shape[1]
        K[i0:i1, j0:j1] = blk
        if sym and i0 != j0:
            K[j0:j1, i0:i1] = blk.transpose(0, 1) if kind != "full" else blk.permute(1, 0, 3, 2)

    def grid(fr, r0, fc, c0, triangle, block=CONTRACT_BLOCK, tick=None):
        """Every block x block Gram block between held features fr (rows from r0) and fc; with `triangle`
        only those on and above the diagonal, and the diagonal ones split again (halving block size down
        to MIN_DIAGONAL_BLOCK), so little of their redundant lower half is computed."""
        nr, nc = _rows(fr), _rows(fc)
        done = 0
        for i in range(0, nr, block):
            for j in range(i if triangle else 0, nc, block):
                a, b = _slice(fr, i, min(i + block, nr)), _slice(fc, j, min(j + block, nc))
                if triangle and i == j and block >= 2 * MIN_DIAGONAL_BLOCK:
                    grid(a, r0 + i, b, c0 + j, True, block // 2)
                else:
                    fill(r0 + i, c0 + j, a, b)
                done += 1
                if tick is not None:
                    tick(done)

    def n_blocks(nr, nc, triangle):
        br, bc = -(-nr // CONTRACT_BLOCK), -(-nc // CONTRACT_BLOCK)
        return br * (br + 1) // 2 if triangle else br * bc

    if (n1 + (0 if sym else n2)) * retained + chunk * transient <= avail:
        # everything fits: features once per row, then large Gram blocks (upper triangle when symmetric)
        rows = Progress(progress, "eNTK feature rows", n1 + (0 if sym else n2))
        f1 = _all_features(model, x1, kind, diag, chunk, rows)
        f2 = f1 if sym else _all_features(model, xs2, kind, diag, chunk, lambda done: rows(n1 + done))
        grid(f1, 0, f2, 0, sym, tick=Progress(progress, "eNTK Gram blocks", n_blocks(n1, n2, sym)))
        return K
    # Out of core: hold the features of a panel of rows, stream the columns after it (all columns when x2
    # is given) in blocks whose features are computed on the fly. Panels as large as the budget allows:
    # with k panels each row's features are computed about 1 + (k - 1)/2 times (symmetric case).
    free = max(avail - chunk * transient, retained)
    stream = max(1, min(CONTRACT_BLOCK, int(free // (2 * retained))))
    panel = max(1, int(free // retained) - stream)
    panels = range(0, n1, panel)

    def columns(a):
        return range(min(a + panel, n1) if sym else 0, n2, stream)
    tick, done = Progress(progress, "eNTK panel blocks", sum(len(columns(a)) + sym for a in panels)), 0
    for a in panels:
        fi = _all_features(model, x1[a:a + panel], kind, diag, chunk)
        if sym:
            grid(fi, a, fi, a, True)
            done += 1
            tick(done)
        for j in columns(a):
            grid(fi, a, _all_features(model, xs2[j:j + stream], kind, diag, chunk), j, False)
            done += 1
            tick(done)
        del fi
    return K


def _rows(feats: list[_LayerFeatures]) -> int:
    f = feats[0]
    return len(f.dense_A) if f.dense_A is not None else len(f.J)


# --------------------------------------------------------------------------------------------- public API
@contextlib.contextmanager
def ieee_float32():
    """Full float32 arithmetic for CUDA convolutions and matmuls while the block runs, restored after.

    cuDNN convolutions default to TF32 on Ampere and later GPUs (a 10-bit mantissa, errors near 1e-3):
    the eNTK's float32 kernels promise 1e-5. Uses torch's fp32_precision settings where they exist (mixing
    them with the older allow_tf32 flags is an error), else those flags. No effect on CPU arithmetic."""
    b = torch.backends
    if hasattr(getattr(b.cudnn, "conv", None), "fp32_precision"):
        knobs = [(b.cudnn.conv, "fp32_precision", "ieee"), (b.cuda.matmul, "fp32_precision", "ieee")]
    else:
        knobs = [(b.cudnn, "allow_tf32", False), (b.cuda.matmul, "allow_tf32", False)]
    saved = [getattr(obj, name) for obj, name, _ in knobs]
    try:
        for obj, name, value in knobs:
            setattr(obj, name, value)
        yield
    finally:
        for (obj, name, _), value in zip(knobs, saved):
            setattr(obj, name, value)


def empirical_ntk(model, x1, x2=None, kind: str = "mean", dtype=torch.float32, implementation: str = "auto",
                  max_memory_gb: float | None = None, progress=None) -> torch.Tensor:
    """Empirical NTK of `model` between x1 and x2: Theta(x, x') = J(x) J(x')^T over all parameters.

    Args:
        model: a network from `build` (the fast layerwise form) or any torch module (the Jacobian form).
        x1, x2: inputs (n1, ...) and (n2, ...); x2=None computes x1 with itself (symmetric, half the work).
        kind: 'mean' (mean over the C logits of J_c J_c^T, neural-tangents' convention), 'sum' (NTK of the
            summed logits) or 'full' (every logit pair).
        dtype: float32 (default) or float64; the model is never changed (a copy is cast if needed).
        implementation: 'auto', 'layerwise' (never forms a Jacobian) or 'jacobian' (torch.func reference).
        max_memory_gb: budget of the per-sample features (default 4 GB); more is computed out of core.
        progress: a callable receiving progress lines, or None.

    Returns:
        torch.Tensor (n1, n2) for 'mean' and 'sum', (n1, n2, C, C) for 'full', in `dtype`, on the model's device.

    Example:
        >>> net = build("mlp", 64, (8,), 3, depth=2, seed=0)
        >>> empirical_ntk(net, torch.randn(5, 8)).shape
        torch.Size([5, 5])
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is unknown; expected one of {KINDS}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is unknown; expected one of {IMPLEMENTATIONS}")
    layerwise_ok = isinstance(model, Network)
    if implementation == "auto":
        implementation = "layerwise" if layerwise_ok else "jacobian"
    if implementation == "layerwise" and not layerwise_ok:
        raise ValueError("implementation='layerwise' needs a network built by ntkscaling.models.build")
    device = next(model.parameters()).device
    was_training = model.training
    if next(model.parameters()).dtype != dtype:  # never change the caller's model
        model = copy.deepcopy(model).to(dtype=dtype)
    model.eval()
    x1 = torch.as_tensor(x1).to(device=device, dtype=dtype)
    x2 = None if x2 is None else torch.as_tensor(x2).to(device=device, dtype=dtype)
    try:
        with ieee_float32():
            if implementation == "jacobian":
                with torch.no_grad():
                    return _jacobian_ntk(model, x1, x2, kind)
            with hostmem.keep_freed_memory():
                return _layerwise_ntk(model, x1, x2, kind, max_memory_gb, progress)
    finally:
        model.train(was_training)


def memory_budget_gb(mem_mb: float | None, device) -> float:
    """`max_memory_gb` for an eNTK job: on CUDA 80% of the GPU memory free now; on the CPU 80% of the job's
    memory request (`mem_mb`, as Snakemake and SLURM give it) less 1 GB for the interpreter and the data,
    at least 1 GB. The kernel itself is counted inside the budget."""
    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return 0.8 * free / 1e9
    if not mem_mb:
        return DEFAULT_MEMORY_GB
    return max(1.0, 0.8 * float(mem_mb) / 1000 - 1.0)


def empirical_ntk_from_checkpoint(path, x1, x2=None, kind: str = "mean", dtype=torch.float32,
                                  implementation: str = "auto", max_memory_gb=None, device=None, progress=None):
    """eNTK of the network stored in a training checkpoint (read weights-only: no code from the file runs).

    Args:
        path: a checkpoint written by `train_network` or the workflow (init/, train/, evolution/).
        device: where to compute (default: CUDA when visible, else the CPU); other arguments as `empirical_ntk`.

    Returns:
        torch.Tensor as `empirical_ntk`.
    """
    from .models import load_network
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    net = load_network(path, map_location=device).to(device)
    return empirical_ntk(net, x1, x2, kind=kind, dtype=dtype, implementation=implementation,
                         max_memory_gb=max_memory_gb, progress=progress)
