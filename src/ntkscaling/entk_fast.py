"""The production empirical-NTK engine (``implementation='layerwise'``): the layers' own eNTK rules
(layers.py: features and their Gram terms) computed with fusions and within a memory budget. It gives
the numbers of the plain walk in entk.py, faster and in bounded memory; tests/test_entk.py holds it to
that walk, the autograd Jacobian and neural-tangents.

Fusions (each measured, see benchmarks/README.md):
- `_Tape`: a forward pass without autograd that keeps what the backward needs, and the backward written
  out per layer: each ReLU followed by a pooling folded into one broadcast multiply (its mask pre-scaled by
  the pooling's 1/4 or 1/(H W)), gradients written straight into the feature storage; any other layer
  falls back to its own `vjp`.
- A conv's per-sample weight gradients for every logit from one batched matmul per layer over its
  unfolded input (unfolded once per chunk by a strided copy into a reused buffer).
- The mean kind's readout-diagonal layer (`readout_diagonal`): one feature vector per sample instead of C.
- Feature storage is one buffer mapped in full when created (hostmem.populated_empty).
- Features are held within `max_memory_gb`: all rows when they fit, else a panel of rows at a time against
  streamed blocks of the later columns (each row's features computed about 1 + (k-1)/2 times for k
  panels). When x2 is x1 only the upper triangle of Gram blocks is computed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import hostmem
from .io import Progress
from .layers import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, ParamLayer, ReLU
from .models import Network

FEATURE_CHUNK = 32    # samples per forward/backward: per-sample cost grows with larger chunks (caches)
CONTRACT_BLOCK = 256  # rows per Gram block when all features are held: big, efficient matmuls
MIN_DIAGONAL_BLOCK = 64  # smaller Gram blocks are bound by memory traffic, not flops
DEFAULT_MEMORY_GB = 4.0  # max_memory_gb when none is given (also a CPU job's without a memory request)

Features = list[dict[str, torch.Tensor]]  # per parametrized layer, its named feature tensors (n, ...)


def readout_diagonal(model: Network, kind: str) -> int | None:
    """For the mean kind: the index (among param layers) of the last hidden layer when only channel-wise
    layers (ReLU, pooling) lie between it and the Dense readout, else None.

    Its output gradient for logit c is s W_out[c, j] D[j, ...] with D = d(readout input)_j / d(output)_j
    the same for every logit, so sum_c J_c(x).J_c(x') = sum_j s^2 |W_out[:, j]|^2 (D(x) . D(x'))_j: one
    feature vector per sample, scaled per channel, instead of C (for Myrtle-5 this layer is 1/3 of the
    Gram)."""
    mods = list(model)
    params = [i for i, m in enumerate(mods) if isinstance(m, ParamLayer)]
    if kind != "mean" or len(params) < 2 or params[-1] != len(mods) - 1 or not isinstance(mods[-1], Dense):
        return None
    between = mods[params[-2] + 1:params[-1]]
    return len(params) - 2 if all(getattr(m, "channelwise", False) for m in between) else None


def unfold3x3(h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
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


def _alloc_features(model: Network, n: int, logits: int, dtype, device, diag: int | None) -> Features:
    """Feature storage for n samples: views into one buffer whose pages are mapped up front
    (hostmem.populated_empty), not faulted in one at a time by the matmuls writing them."""
    shapes = [{name: (n,) + shape for name, shape in m.feature_shapes(1 if j == diag else logits).items()}
              for j, m in enumerate(model.param_layers())]
    sizes = [math.prod(s) for layer in shapes for s in layer.values()]
    parts = iter(hostmem.populated_empty(sum(sizes), dtype, device).split(sizes))
    return [{name: next(parts).view(shape) for name, shape in layer.items()} for layer in shapes]


def _mul_into(g: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """g * mask (mask of the product's shape), written into `out`'s storage when given."""
    return g * mask if out is None else torch.mul(g, mask, out=out.view(mask.shape))


class _Tape:
    """A forward pass of a `Network` without autograd that keeps what its backward needs, and that backward
    written out per layer (measured 1.15x faster than autograd's for Myrtle-5 on CPU): the transposed conv
    with the scaled weight formed once, and each ReLU followed by a pooling folded into one broadcast
    multiply (its mask pre-scaled by the pooling's 1/4 or 1/(H W)). Layers without a fused rule here use
    their own `vjp`.

    inputs[j]: the input of the j-th parametrized layer; out: the network output."""

    def __init__(self, model: Network, x: torch.Tensor):
        self.mods = list(model)
        self.saved: list = [None] * len(self.mods)
        self.params = [i for i, m in enumerate(self.mods) if isinstance(m, ParamLayer)]
        self.param_index = {i: j for j, i in enumerate(self.params)}
        self.inputs = []
        h = x
        for i, m in enumerate(self.mods):
            nxt = self.mods[i + 1] if i + 1 < len(self.mods) else None
            if isinstance(m, ParamLayer):
                self.inputs.append(h)
                self.saved[i] = m.scaled_weight()
            elif isinstance(m, ReLU):
                mask = (h > 0).to(h.dtype)
                if isinstance(nxt, AvgPool):
                    mask.mul_(0.25)
                elif isinstance(nxt, GlobalAvgPool):
                    mask.mul_(1.0 / (h.shape[2] * h.shape[3]))
                self.saved[i] = mask
            elif isinstance(m, (AvgPool, GlobalAvgPool, Flatten)):
                self.saved[i] = h.shape
            else:
                self.saved[i] = h
            h = m(h)
        self.out = h

    def _dest(self, i, dest):
        """Where the gradient computed at module i goes: dest(j) when module i - 1 is the j-th Dense/Conv."""
        if dest is None or i == 0 or not isinstance(self.mods[i - 1], ParamLayer):
            return None
        return dest(self.param_index[i - 1])

    def backward(self, g: torch.Tensor, top: int, dest=None):
        """Yield (j, gradient at the output of the j-th parametrized layer), walking down from module `top`
        whose output gradient is g, to the first layer's output. `dest(j)`, when given, is a tensor (or
        None) of that gradient's shape that the last product forming it is written into (saves a copy)."""
        i = top
        while True:
            m, saved = self.mods[i], self.saved[i]
            if isinstance(m, ParamLayer):
                yield self.param_index[i], g
                if i == self.params[0]:
                    return
                g = g @ saved if isinstance(m, Dense) else F.conv_transpose2d(g, saved, padding=1)
            elif i > 0 and isinstance(self.mods[i - 1], ReLU) and isinstance(m, (AvgPool, GlobalAvgPool)):
                g = self._relu_pool(g, i, dest)
                i -= 1
            elif isinstance(m, ReLU):
                g = _mul_into(g, saved, self._dest(i, dest))
            elif isinstance(m, AvgPool):
                n, c, H, W = saved
                g = (g * 0.25)[:, :, :, None, :, None].expand(n, c, H // 2, 2, W // 2, 2).reshape(saved)
            elif isinstance(m, GlobalAvgPool):
                g = (g / (saved[2] * saved[3]))[:, :, None, None].expand(saved).contiguous()
            elif isinstance(m, Flatten):
                if len(saved) == 4:
                    n, c, H, W = saved
                    g = g.reshape(n, H, W, c).permute(0, 3, 1, 2).contiguous()
            else:
                g = m.vjp(g, saved).contiguous()
            i -= 1

    def _relu_pool(self, g, i, dest):
        """The backward of pooling module i and the ReLU before it: one multiply by the ReLU's mask, which
        holds the pooling's factor."""
        mask, shape = self.saved[i - 1], self.saved[i]
        if isinstance(self.mods[i], GlobalAvgPool):
            return _mul_into(g[:, :, None, None], mask, self._dest(i - 1, dest))
        n, c, H, W = shape
        # widen the rows first: a broadcast over a last axis of 2 is 1.1-2x slower
        g = g[..., None].expand(n, c, H // 2, W // 2, 2).reshape(n, c, H // 2, 1, W)
        return _mul_into(g, mask.view(n, c, H // 2, 2, W), self._dest(i - 1, dest)).view(shape)


class _Scratch(dict):
    """Buffers kept between chunks (fresh large tensors each cost their page faults again)."""

    def get_buffer(self, key, size, like):
        if key not in self or self[key].numel() < size:
            self[key] = torch.empty(size, dtype=like.dtype, device=like.device)
        return self[key][:size]


def _block_features(model: Network, x: torch.Tensor, kind: str, diag: int | None, into: Features,
                    lo: int, scratch: _Scratch) -> None:
    """Features of the rows of x, written into rows lo.. of `into`; `diag`: the readout-diagonal layer (or
    None)."""
    n, rows = len(x), slice(lo, lo + len(x))
    with torch.no_grad():
        tape = _Tape(model, x)
        layers = [tape.mods[i] for i in tape.params]
        logits = 1 if kind == "sum" else tape.out.shape[1]
        # a conv's per-sample weight gradient is G^T unfold(A): unfold once, reuse for every logit; every
        # logit's output gradients of a conv layer (n, C', C_out, H*W), formed by the backward passes, then
        # one batched matmul per layer (measured 1.1-1.5x the rate of one per logit: each sample's unfolded
        # input stays in the cache for all logits)
        unfolded, conv_grads = {}, {}
        for j, (m, A) in enumerate(zip(layers, tape.inputs)):
            if isinstance(m, Conv):  # 3x3 convolutions with padding 1: the output has the input's H*W
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


def contract(model: Network, f1: Features, f2: Features, kind: str) -> torch.Tensor:
    """The kernel between two sets of samples from their features: each layer's Gram term, summed (and
    divided by the number of logits for the mean kind): (n1, n2), or (n1, n2, C, C) for the full kind."""
    K = None
    for layer, a, b in zip(model.param_layers(), f1, f2):
        term = layer.entk_gram(a, b, kind)
        K = term if K is None else K + term
    return K / model.param_layers()[-1].fan_out if kind == "mean" else K


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
            if isinstance(m, ParamLayer):
                cp = 1 if j == diag else logits
                retained += sum(math.prod(s) for s in m.feature_shapes(cp).values())
                if isinstance(m, Conv):
                    unfolded += (m.c_in * 9 + cp * m.c_out) * h.shape[2] * h.shape[3]
                j += 1
            h = m(h)
            acts += 2 * h[0].numel()  # the tape: each module's output and its saved mask or input
            if isinstance(m, ParamLayer):
                grads += 2 * h[0].numel()  # one logit's output gradient and the product forming the next
    return retained * itemsize, (acts + grads + unfolded) * itemsize


def _slice(feats: Features, lo: int, hi: int) -> Features:
    return [{name: t[lo:hi] for name, t in f.items()} for f in feats]


def _rows(feats: Features) -> int:
    return len(next(iter(feats[0].values())))


def _all_features(model, x, kind, diag, chunk, tick=None) -> Features:
    """Features of every row of x, computed `chunk` rows at a time straight into preallocated tensors;
    `tick(rows done)` after each chunk."""
    logits = 1 if kind == "sum" else model.param_layers()[-1].fan_out
    out = _alloc_features(model, len(x), logits, x.dtype, x.device, diag)
    scratch = _Scratch()
    for lo in range(0, len(x), chunk):
        _block_features(model, x[lo:lo + chunk], kind, diag, out, lo, scratch)
        if tick is not None:
            tick(min(lo + chunk, len(x)))
    return out


class _GramFill:
    """Writes Gram blocks of held features into the kernel K (n1, n2[, C, C]); `symmetric` when x2 is x1:
    each block also fills its mirror image."""

    def __init__(self, model, K, kind, symmetric):
        self.model, self.K, self.kind, self.symmetric = model, K, kind, symmetric

    def block(self, i0, j0, fi, fj):
        blk = contract(self.model, fi, fj, self.kind)
        i1, j1 = i0 + blk.shape[0], j0 + blk.shape[1]
        self.K[i0:i1, j0:j1] = blk
        if self.symmetric and i0 != j0:
            self.K[j0:j1, i0:i1] = blk.transpose(0, 1) if self.kind != "full" else blk.permute(1, 0, 3, 2)

    def grid(self, fr, r0, fc, c0, triangle, block=None, tick=None):
        """Every block x block Gram block between held features fr (rows from r0) and fc; with `triangle`
        only those on and above the diagonal, and the diagonal ones split again (halving block size down
        to MIN_DIAGONAL_BLOCK), so little of their redundant lower half is computed."""
        nr, nc, block = _rows(fr), _rows(fc), block or CONTRACT_BLOCK
        done = 0
        for i in range(0, nr, block):
            for j in range(i if triangle else 0, nc, block):
                a, b = _slice(fr, i, min(i + block, nr)), _slice(fc, j, min(j + block, nc))
                if triangle and i == j and block >= 2 * MIN_DIAGONAL_BLOCK:
                    self.grid(a, r0 + i, b, c0 + j, True, block // 2)
                else:
                    self.block(r0 + i, c0 + j, a, b)
                done += 1
                if tick is not None:
                    tick(done)


def _n_blocks(nr, nc, triangle):
    br, bc = -(-nr // CONTRACT_BLOCK), -(-nc // CONTRACT_BLOCK)
    return br * (br + 1) // 2 if triangle else br * bc


def layerwise_ntk(model: Network, x1, x2, kind, max_memory_gb, progress) -> torch.Tensor:
    """The eNTK of x1 with x2 (None: x1 with itself), within `max_memory_gb` (see the module's docstring)."""
    C = model.param_layers()[-1].fan_out
    diag = readout_diagonal(model, kind)
    retained, transient = bytes_per_sample(model, x1.shape[1:], 1 if kind == "sum" else C, x1.element_size(), diag)
    sym = x2 is None
    x_cols = x1 if sym else x2
    n1, n2 = len(x1), len(x_cols)
    out_bytes = n1 * n2 * x1.element_size() * (C * C if kind == "full" else 1)
    avail = max((max_memory_gb or DEFAULT_MEMORY_GB) * 1e9 - out_bytes, 0)
    K = torch.empty((n1, n2, C, C) if kind == "full" else (n1, n2), dtype=x1.dtype, device=x1.device)
    chunk = max(1, min(FEATURE_CHUNK, int(avail // (retained + transient))))
    fill = _GramFill(model, K, kind, sym)
    if (n1 + (0 if sym else n2)) * retained + chunk * transient <= avail:
        # everything fits: features once per row, then large Gram blocks (upper triangle when symmetric)
        rows = Progress(progress, "eNTK feature rows", n1 + (0 if sym else n2))
        f1 = _all_features(model, x1, kind, diag, chunk, rows)
        f2 = f1 if sym else _all_features(model, x_cols, kind, diag, chunk, lambda done: rows(n1 + done))
        fill.grid(f1, 0, f2, 0, sym, tick=Progress(progress, "eNTK Gram blocks", _n_blocks(n1, n2, sym)))
        return K
    _out_of_core(model, x1, x_cols, kind, diag, chunk, fill, max(avail - chunk * transient, retained), retained,
                 progress)
    return K


def _out_of_core(model, x1, x_cols, kind, diag, chunk, fill, free, retained, progress):
    """Hold the features of a panel of rows, stream the columns after it (all columns when x2 is given) in
    blocks whose features are computed on the fly. Panels as large as the `free` bytes allow: with k panels
    each row's features are computed about 1 + (k - 1)/2 times (symmetric case)."""
    sym, n1, n2 = fill.symmetric, len(x1), len(x_cols)
    stream = max(1, min(CONTRACT_BLOCK, int(free // (2 * retained))))
    panel = max(1, int(free // retained) - stream)
    panels = range(0, n1, panel)

    def columns(a):
        return range(min(a + panel, n1) if sym else 0, n2, stream)
    tick, done = Progress(progress, "eNTK panel blocks", sum(len(columns(a)) + sym for a in panels)), 0
    for a in panels:
        fi = _all_features(model, x1[a:a + panel], kind, diag, chunk)
        if sym:
            fill.grid(fi, a, fi, a, True)
            done += 1
            tick(done)
        for j in columns(a):
            fill.grid(fi, a, _all_features(model, x_cols[j:j + stream], kind, diag, chunk), j, False)
            done += 1
            tick(done)
        del fi
