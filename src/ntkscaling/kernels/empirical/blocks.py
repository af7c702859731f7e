"""Memory-bounded empirical NTK from per-sample features: the block machinery shared by the eNTK engines.

An engine is a *feature source* (entk_fast.LayerwiseFeatures for networks built from nets/layers.py,
entk_jacobian.JacobianFeatures for any torch module): it says how many bytes one sample's features hold
(`bytes_per_sample`), allocates feature storage (`alloc`), computes the features of a chunk of samples
into it (`compute`) and turns two blocks of features into a block of the kernel (`contract`).

`bounded_ntk` holds the features within `max_memory_gb` as `plan` lays out: all rows when they fit; else
the features of a panel of rows as large as the budget allows, against the later columns streamed past it
in small blocks (`Plan.feature_rows` counts the features computed: a sample of panel k, counted from 0, is
computed k + 1 times, so with n rows in panels of B the total is about n + n^2 / (2B) for a kernel of x1 with
itself). When x2 is x1 only the upper triangle of Gram blocks is computed.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ...jobs import Progress

FEATURE_CHUNK = 32    # samples per forward/backward: per-sample cost grows with larger chunks (caches)
CONTRACT_BLOCK = 256  # rows per Gram block when all features are held: big, efficient matmuls
MIN_DIAGONAL_BLOCK = 64  # smaller Gram blocks are bound by memory traffic, not flops
DEFAULT_MEMORY_GB = 4.0  # max_memory_gb when none is given (also a CPU job's without a memory request)
# Out of core: the share of the budget a chunk's transient memory may take (the rest holds the panel), and
# the most columns streamed at once (each streamed block reads the whole panel once in its Gram product,
# so blocks of 64 keep that product bound by flops, not memory traffic; fewer leave more room to the panel)
OUT_OF_CORE_TRANSIENT_SHARE = 1 / 8
STREAM_BLOCK = 64
# Out of core the panel fills the budget, where what the plan does not count (the inputs, Gram blocks,
# allocator slack) took the peak 1-5% over it (benchmarks/README.md): that much is left free
OUT_OF_CORE_MARGIN = 0.05

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


def _all_features(source, x, chunk, tick=None, into: Features | None = None, scratch: Scratch | None = None
                  ) -> Features:
    """Features of every row of x, computed `chunk` rows at a time straight into preallocated tensors (`into`,
    at least len(x) rows, reused; else fresh ones); `tick(rows done)` after each chunk."""
    out = source.alloc(len(x), x.dtype, x.device) if into is None else _slice(into, 0, len(x))
    scratch = Scratch() if scratch is None else scratch
    for lo in range(0, len(x), chunk):
        source.compute(x[lo:lo + chunk], out, lo, scratch)
        if tick is not None:
            tick(min(lo + chunk, len(x)))
    return out


@dataclasses.dataclass(frozen=True)
class Plan:
    """How `bounded_ntk` holds the features of a kernel with n1 rows and n2 columns: `chunk` samples per
    feature computation; `held`: every row's features at once; else panels of `panel` samples of the held
    side (the rows, or the columns when `hold_columns`) against blocks of `stream` samples of the other side
    computed on the fly. `feature_rows`: the per-sample features it computes in all (n1 + n2 when held;
    n1 when x2 is x1)."""
    chunk: int
    held: bool
    panel: int
    stream: int
    hold_columns: bool
    feature_rows: int


def plan(retained: int, transient: int, n1: int, n2: int, symmetric: bool, avail: float,
         max_chunk: int | None = None) -> Plan:
    """The `Plan` for features of `retained` bytes per sample held and `transient` bytes per sample of a
    chunk being computed, within `avail` bytes, in chunks of at most FEATURE_CHUNK (and `max_chunk`, a
    source's own bound). Out of core the panel is as large as the budget allows once a margin
    (OUT_OF_CORE_MARGIN), a chunk's transient memory (at most OUT_OF_CORE_TRANSIENT_SHARE of the budget) and
    a streamed block are set aside."""
    most = FEATURE_CHUNK if max_chunk is None else min(FEATURE_CHUNK, max_chunk)
    chunk = max(1, min(most, int(avail // (retained + transient))))
    if (n1 + (0 if symmetric else n2)) * retained + chunk * transient <= avail:
        return Plan(chunk, True, n1, 0, False, n1 + (0 if symmetric else n2))
    avail *= 1 - OUT_OF_CORE_MARGIN
    chunk = max(1, min(most, int(avail * OUT_OF_CORE_TRANSIENT_SHARE // transient)))
    slots = max(2, int((avail - chunk * transient) // retained))  # samples' features held at once
    stream = max(1, min(STREAM_BLOCK, slots // 5))
    panel = slots - stream
    if symmetric:
        return Plan(chunk, False, panel, stream, False, panel_feature_rows(n1, n1, panel, True))
    rows_held, columns_held = (panel_feature_rows(n1, n2, panel, False), panel_feature_rows(n2, n1, panel, False))
    return Plan(chunk, False, panel, stream, columns_held < rows_held, min(rows_held, columns_held))


def panel_feature_rows(n_held: int, n_streamed: int, panel: int, symmetric: bool) -> int:
    """Per-sample features computed by panels of `panel` of the n_held samples, each against the streamed
    samples: all n_streamed, or for a symmetric kernel those after the panel (each sample of panel k, from
    0, is then computed k + 1 times: once held, k times streamed)."""
    panels = math.ceil(n_held / panel)
    if not symmetric:
        return n_held + panels * n_streamed
    return n_held + sum(n_held - min((k + 1) * panel, n_held) for k in range(panels))


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
    budget = (max_memory_gb or DEFAULT_MEMORY_GB) * 1e9
    if out_bytes >= budget:
        from ...arguments import ArgumentError
        raise ArgumentError(f"max_memory_gb={budget / 1e9:g}: the kernel itself ({n1} x {n2}"
                            f"{f' x {C} x {C}' if full else ''}) takes {out_bytes / 1e9:.3g} GB; give a larger budget")
    avail = budget - out_bytes
    K = torch.empty((n1, n2, C, C) if full else (n1, n2), dtype=x1.dtype, device=x1.device)
    layout = plan(retained, transient, n1, n2, sym, avail, getattr(source, "max_chunk", None))
    fill = _GramFill(source, K, sym)
    if layout.held:
        # everything fits: features once per row, then large Gram blocks (upper triangle when symmetric)
        rows = Progress(progress, "eNTK feature rows", n1 + (0 if sym else n2))
        f1 = _all_features(source, x1, layout.chunk, rows)
        f2 = f1 if sym else _all_features(source, x_cols, layout.chunk, lambda done: rows(n1 + done))
        fill.grid(f1, 0, f2, 0, sym, tick=Progress(progress, "eNTK Gram blocks", _n_blocks(n1, n2, sym)))
        return K
    if progress:
        progress(f"eNTK out of core: panels of {layout.panel} samples held, {layout.stream} streamed at a time; "
                 f"{layout.feature_rows} per-sample features computed for {n1 if sym else n1 + n2} samples")
    _out_of_core(source, x1, x_cols, layout, fill, progress)
    return K


def _out_of_core(source, x1, x_cols, layout: Plan, fill, progress):
    """Hold the features of a panel of the held side, stream the other side past it (for a symmetric kernel
    the columns after the panel) in blocks whose features are computed on the fly into one reused buffer."""
    sym, panel, stream = fill.symmetric, layout.panel, layout.stream
    held, streamed = (x_cols, x1) if layout.hold_columns else (x1, x_cols)
    n_held, n_streamed = len(held), len(streamed)
    panels = range(0, n_held, panel)

    def blocks(a):
        return range(min(a + panel, n_held) if sym else 0, n_streamed, stream)

    def gram(fp, a, fs, j):  # the panel's features (from sample a) against a streamed block (from j)
        if layout.hold_columns:
            fill.grid(fs, j, fp, a, False)
        else:
            fill.grid(fp, a, fs, j, False)
    tick, done = Progress(progress, "eNTK panel blocks", sum(len(blocks(a)) + sym for a in panels)), 0
    dtype, device = x1.dtype, x1.device
    panel_buffer = source.alloc(min(panel, n_held), dtype, device)
    streams = any(len(blocks(a)) for a in panels)
    stream_buffer = source.alloc(min(stream, n_streamed), dtype, device) if streams else None
    scratch = Scratch()
    for a in panels:
        fp = _all_features(source, held[a:a + panel], layout.chunk, into=panel_buffer, scratch=scratch)
        if sym:
            fill.grid(fp, a, fp, a, True)
            done += 1
            tick(done)
        for j in blocks(a):
            fs = _all_features(source, streamed[j:j + stream], layout.chunk, into=stream_buffer, scratch=scratch)
            gram(fp, a, fs, j)
            done += 1
            tick(done)
