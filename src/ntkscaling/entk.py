"""Empirical NTK of a network (at any checkpoint): the kernel stage of the pipeline.

K(x, x') = sum over parameters of J_c(x) J_d(x')^T, with gradients taken w.r.t. the model's raw parameters
(NTK parameterization puts the scale in the forward pass). Kinds, as in neural-tangents:

- ``mean``: (1/C) sum_c J_c(x).J_c(x')   -> (n1, n2)   (neural-tangents' trace_axes convention)
- ``sum``:  the NTK of the summed logits -> (n1, n2)   (= sum over c, d of the full block)
- ``full``: J_c(x).J_d(x')                -> (n1, n2, C, C)

Implementations (all return the same numbers):

- ``jacobian``: the plain reference; per-sample Jacobians with torch.func (jacrev + vmap), then contraction.
- ``layerwise``: the production path for networks built by models.py. One forward pass records each
  layer's input A and C backward passes give the per-sample gradients G of the logits w.r.t. each layer's
  output. A Dense layer contributes (W_scale^2 A A'^T + b_scale^2) * (G G'^T), so an MLP needs no Jacobian;
  a Conv layer's per-sample weight gradient W_scale * G^T unfold(A) is formed one layer and one block at a
  time and contracted by a matmul. Rows and columns go in blocks sized to `max_memory_gb`, and when
  x2 is x1 only the upper triangle of block pairs is computed.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models import Conv, Dense, Network

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
    """What one layer contributes for a block of samples (C' = 1 for the sum kind, else C logits)."""
    dense_A: torch.Tensor | None = None   # (n, fan_in) layer inputs (Dense)
    G: torch.Tensor | None = None         # (n, C', fan_out) output gradients (Dense)
    J: torch.Tensor | None = None         # (n, C', D) per-sample weight gradients without W_scale (Conv)
    Jb: torch.Tensor | None = None        # (n, C', C_out) per-sample bias gradients without b_scale (Conv)
    W_scale: float = 1.0
    b_scale: float = 1.0


def _block_features(model: Network, x: torch.Tensor, kind: str) -> list[_LayerFeatures]:
    outputs, inputs, layers = [], [], []
    h = x
    with torch.enable_grad():
        for m in model:
            if isinstance(m, (Dense, Conv)):
                inputs.append(h.detach())
                layers.append(m)
                h = m(h)
                outputs.append(h)  # non-leaf, in the graph through the weights: autograd.grad can target it
            else:
                h = m(h)
        C = h.shape[1]
        Cp = 1 if kind == "sum" else C
        # gradient buffers (n, C', *layer output): one matmul per conv layer then covers all logits
        G = [torch.empty((len(x), Cp) + z.shape[1:], dtype=z.dtype, device=z.device) for z in outputs]
        # one backward pass per logit: a batched (vmapped) backward measured 2x slower on CPU
        for c in range(Cp):
            target = h.sum() if kind == "sum" else h[:, c].sum()
            for buf, g in zip(G, torch.autograd.grad(target, outputs, retain_graph=c < Cp - 1)):
                buf[:, c] = g
    feats = []
    n = len(x)
    for m, A, Gl in zip(layers, inputs, G):
        if isinstance(m, Dense):
            feats.append(_LayerFeatures(dense_A=A, G=Gl, W_scale=m.W_scale, b_scale=m.b_scale))
            continue
        Gp = Gl.reshape(n, Cp * m.c_out, -1)                                    # (n, C'*C_out, P)
        J = torch.bmm(Gp, F.unfold(A, 3, padding=1).transpose(1, 2))             # (n, C'*C_out, C_in*9)
        feats.append(_LayerFeatures(J=J.reshape(n, Cp, -1), Jb=Gp.sum(2).reshape(n, Cp, m.c_out),
                                    W_scale=m.W_scale, b_scale=m.b_scale))
    return feats


def _contract(f1: list[_LayerFeatures], f2: list[_LayerFeatures], kind: str, n_logits: int) -> torch.Tensor:
    """Sum over layers of the block pair's kernel: (n1, n2), or (n1, n2, C, C) for the full kind."""
    K = None

    def gram(a, b):  # (n1, C', D), (n2, C', D) -> per-logit-pair or logit-summed inner products
        if kind == "full":
            return torch.einsum("acp,bdp->abcd", a, b)
        return a.reshape(len(a), -1) @ b.reshape(len(b), -1).T

    for a, b in zip(f1, f2):
        if a.J is not None:
            term = a.W_scale ** 2 * gram(a.J, b.J) + a.b_scale ** 2 * gram(a.Jb, b.Jb)
        else:
            lin = (a.W_scale ** 2) * (a.dense_A @ b.dense_A.T) + a.b_scale ** 2
            term = (lin[:, :, None, None] if kind == "full" else lin) * gram(a.G, b.G)
        K = term if K is None else K + term
    return K / n_logits if kind == "mean" else K


def _bytes_per_sample(model: Network, x_shape, C: int, itemsize: int) -> tuple[int, int]:
    """(retained, transient) memory per sample of the layerwise features.

    retained: what a block keeps for its contractions (Dense inputs and output gradients, Conv per-sample
    gradients); transient: activations, graph and the largest per-layer temporaries while computing them."""
    p = next(model.parameters())
    retained, acts, grads, temp = 0, 0, 0, 0
    h = torch.zeros((1,) + tuple(x_shape), dtype=p.dtype, device=p.device)
    with torch.no_grad():
        for m in model:
            if isinstance(m, Dense):
                retained += h[0].numel() + C * m.fan_out
            elif isinstance(m, Conv):
                P = h.shape[2] * h.shape[3]
                retained += C * (m.c_out * m.c_in * 9 + m.c_out)
                temp = max(temp, m.c_in * 9 * P + C * m.c_out * P)  # unfolded input, reshaped gradients
            h = m(h)
            acts += 2 * h[0].numel()  # graph: output and probe sum
            if isinstance(m, (Dense, Conv)):
                grads += 2 * C * h[0].numel()  # C output gradients, and their stacked copy
    return retained * itemsize, (acts + grads + temp) * itemsize


FEATURE_CHUNK = 32    # samples per forward/backward: per-sample cost grows with larger chunks (caches)
CONTRACT_BLOCK = 256  # rows per Gram block when all features are held: big, efficient matmuls


def _slice(feats: list[_LayerFeatures], lo: int, hi: int) -> list[_LayerFeatures]:
    def cut(t):
        return None if t is None else t[lo:hi]
    return [_LayerFeatures(cut(f.dense_A), cut(f.G), cut(f.J), cut(f.Jb), f.W_scale, f.b_scale) for f in feats]


def _all_features(model, x, kind, chunk):
    """Features of every row of x, computed `chunk` rows at a time into preallocated tensors."""
    out = None
    for lo in range(0, len(x), chunk):
        part = _block_features(model, x[lo:lo + chunk], kind)
        if out is None:
            def alloc(t):
                return None if t is None else torch.empty((len(x),) + t.shape[1:], dtype=t.dtype, device=t.device)
            out = [_LayerFeatures(alloc(f.dense_A), alloc(f.G), alloc(f.J), alloc(f.Jb), f.W_scale, f.b_scale)
                   for f in part]
        hi = min(lo + chunk, len(x))
        for dst, src in zip(out, part):
            for name in ("dense_A", "G", "J", "Jb"):
                if getattr(src, name) is not None:
                    getattr(dst, name)[lo:hi] = getattr(src, name)
    return out


def _layerwise_ntk(model, x1, x2, kind, max_memory_gb, progress):
    C = model.param_layers()[-1].fan_out
    Cp = 1 if kind == "sum" else C
    retained, transient = _bytes_per_sample(model, x1.shape[1:], Cp, x1.element_size())
    sym = x2 is None
    xs2 = x1 if sym else x2
    n1, n2 = len(x1), len(xs2)
    budget = (max_memory_gb or 4.0) * 1e9
    out_bytes = n1 * n2 * x1.element_size() * (C * C if kind == "full" else 1)
    avail = max(budget - out_bytes, 0)
    K = torch.empty((n1, n2, C, C) if kind == "full" else (n1, n2), dtype=x1.dtype, device=x1.device)
    chunk = max(1, min(FEATURE_CHUNK, int(avail // (retained + transient))))
    t0 = time.perf_counter()

    def report(done, total):
        if progress is not None and total > 1:
            el = time.perf_counter() - t0
            progress(f"eNTK blocks {done}/{total} elapsed {el:.1f}s eta {el / done * (total - done):.1f}s")

    if (n1 + (0 if sym else n2)) * retained + chunk * transient <= avail:
        # everything fits: features once per row, then large Gram blocks (upper triangle when symmetric)
        f1 = _all_features(model, x1, kind, chunk)
        f2 = f1 if sym else _all_features(model, xs2, kind, chunk)
        block = CONTRACT_BLOCK
        recompute = False
    else:
        # features for two blocks at a time, recomputed for every block pair
        block = max(1, int(avail // (2 * retained + transient)))
        recompute = True
    rows = [(i, min(i + block, n1)) for i in range(0, n1, block)]
    cols = rows if sym else [(j, min(j + block, n2)) for j in range(0, n2, block)]
    pairs = [(r, c) for ri, r in enumerate(rows) for ci, c in enumerate(cols) if not sym or ci >= ri]
    for done, ((i0, i1), (j0, j1)) in enumerate(pairs, 1):
        if recompute:
            fi = _block_features(model, x1[i0:i1], kind)
            fj = fi if (sym and i0 == j0) else _block_features(model, xs2[j0:j1], kind)
        else:
            fi, fj = _slice(f1, i0, i1), _slice(f2, j0, j1)
        blk = _contract(fi, fj, kind, C)
        K[i0:i1, j0:j1] = blk
        if sym and i0 != j0:
            K[j0:j1, i0:i1] = blk.transpose(0, 1) if kind != "full" else blk.permute(1, 0, 3, 2)
        report(done, len(pairs))
    return K


# --------------------------------------------------------------------------------------------- public API
def empirical_ntk(model, x1, x2=None, kind: str = "mean", dtype=torch.float32, implementation: str = "auto",
                  max_memory_gb: float | None = None, progress=None) -> torch.Tensor:
    """Empirical NTK of `model` between x1 and x2 (x2=None: x1 with itself, symmetric).

    Returns (n1, n2) for kind 'mean' or 'sum', (n1, n2, C, C) for 'full', in `dtype`, on the model's device.
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
        if implementation == "jacobian":
            with torch.no_grad():
                return _jacobian_ntk(model, x1, x2, kind)
        return _layerwise_ntk(model, x1, x2, kind, max_memory_gb, progress)
    finally:
        model.train(was_training)


def empirical_ntk_from_checkpoint(path, x1, x2=None, kind: str = "mean", dtype=torch.float32,
                                  implementation: str = "auto", max_memory_gb=None, device=None, progress=None):
    """eNTK of the network stored in a training checkpoint (loaded weights-only)."""
    from .models import load_network
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    net = load_network(path, map_location=device).to(device)
    return empirical_ntk(net, x1, x2, kind=kind, dtype=dtype, implementation=implementation,
                         max_memory_gb=max_memory_gb, progress=progress)
