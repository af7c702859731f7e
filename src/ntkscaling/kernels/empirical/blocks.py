"""Memory-bounded empirical NTK from per-sample features: the block machinery shared by the eNTK engines.

An engine is a *feature source* (entk_fast.LayerwiseFeatures for networks built from nets/layers.py,
entk_jacobian.JacobianFeatures for any torch module): it says how many bytes one sample's features hold
(`bytes_per_sample`), allocates feature storage (`alloc`), computes the features of a chunk of samples
into it (`compute`) and turns two blocks of features into a block of the kernel (`contract`).

`bounded_ntk` holds the features within `max_memory_gb`: all rows when they fit, else a panel of rows at a
time against streamed blocks of the later columns (each row's features computed about 1 + (k-1)/2 times
for k panels). When x2 is x1 only the upper triangle of Gram blocks is computed.
"""
from __future__ import annotations

import torch

from ...jobs import Progress

FEATURE_CHUNK = 32    # samples per forward/backward: per-sample cost grows with larger chunks (caches)
CONTRACT_BLOCK = 256  # rows per Gram block when all features are held: big, efficient matmuls
MIN_DIAGONAL_BLOCK = 64  # smaller Gram blocks are bound by memory traffic, not flops
DEFAULT_MEMORY_GB = 4.0  # max_memory_gb when none is given (also a CPU job's without a memory request)

Features = list[dict[str, torch.Tensor]]  # per group of parameters, its named feature tensors (n, ...)


class Scratch(dict):
    """Buffers a source keeps between chunks (fresh large tensors each cost their page faults again)."""

    def get_buffer(self, key, size, like):
        if key not in self or self[key].numel() < size:
            self[key] = torch.empty(size, dtype=like.dtype, device=like.device)
        return self[key][:size]


def _slice(feats: Features, lo: int, hi: int) -> Features:
    return [{name: t[lo:hi] for name, t in f.items()} for f in feats]


def _rows(feats: Features) -> int:
    return len(next(iter(feats[0].values())))


def _all_features(source, x, chunk, tick=None) -> Features:
    """Features of every row of x, computed `chunk` rows at a time straight into preallocated tensors;
    `tick(rows done)` after each chunk."""
    out = source.alloc(len(x), x.dtype, x.device)
    scratch = Scratch()
    for lo in range(0, len(x), chunk):
        source.compute(x[lo:lo + chunk], out, lo, scratch)
        if tick is not None:
            tick(min(lo + chunk, len(x)))
    return out


class _GramFill:
    """Writes Gram blocks of held features into the kernel K (n1, n2[, C, C]); `symmetric` when x2 is x1:
    each block also fills its mirror image."""

    def __init__(self, source, K, symmetric):
        self.source, self.K, self.symmetric = source, K, symmetric

    def block(self, i0, j0, fi, fj):
        blk = self.source.contract(fi, fj)
        i1, j1 = i0 + blk.shape[0], j0 + blk.shape[1]
        self.K[i0:i1, j0:j1] = blk
        if self.symmetric and i0 != j0:
            self.K[j0:j1, i0:i1] = blk.transpose(0, 1) if blk.dim() == 2 else blk.permute(1, 0, 3, 2)

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


def bounded_ntk(source, x1, x2, max_memory_gb, progress) -> torch.Tensor:
    """The eNTK of x1 with x2 (None: x1 with itself) from `source`'s features, within `max_memory_gb`
    (see the module's docstring): (n1, n2), or (n1, n2, C, C) for the full kind."""
    retained, transient = source.bytes_per_sample(x1.shape[1:], x1.element_size())
    sym = x2 is None
    x_cols = x1 if sym else x2
    n1, n2, C = len(x1), len(x_cols), source.logits
    full = source.kind == "full"
    out_bytes = n1 * n2 * x1.element_size() * (C * C if full else 1)
    avail = max((max_memory_gb or DEFAULT_MEMORY_GB) * 1e9 - out_bytes, 0)
    K = torch.empty((n1, n2, C, C) if full else (n1, n2), dtype=x1.dtype, device=x1.device)
    chunk = max(1, min(FEATURE_CHUNK, int(avail // (retained + transient))))
    fill = _GramFill(source, K, sym)
    if (n1 + (0 if sym else n2)) * retained + chunk * transient <= avail:
        # everything fits: features once per row, then large Gram blocks (upper triangle when symmetric)
        rows = Progress(progress, "eNTK feature rows", n1 + (0 if sym else n2))
        f1 = _all_features(source, x1, chunk, rows)
        f2 = f1 if sym else _all_features(source, x_cols, chunk, lambda done: rows(n1 + done))
        fill.grid(f1, 0, f2, 0, sym, tick=Progress(progress, "eNTK Gram blocks", _n_blocks(n1, n2, sym)))
        return K
    _out_of_core(source, x1, x_cols, chunk, fill, max(avail - chunk * transient, retained), retained, progress)
    return K


def _out_of_core(source, x1, x_cols, chunk, fill, free, retained, progress):
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
        fi = _all_features(source, x1[a:a + panel], chunk)
        if sym:
            fill.grid(fi, a, fi, a, True)
            done += 1
            tick(done)
        for j in columns(a):
            fill.grid(fi, a, _all_features(source, x_cols[j:j + stream], chunk), j, False)
            done += 1
            tick(done)
        del fi
