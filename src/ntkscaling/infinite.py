"""Infinite-width NTK and NNGP of the architectures in models.py, in PyTorch (CPU or CUDA).

The same layer description (`models.layer_specs`) that builds the finite network drives the kernel
recursion of ../shared/testdata/ntk-reference/README.md (Sigma: NNGP, Theta: NTK):

- input: Sigma = <x, x'> / D (images: per pixel pair, summed over channels / C), Theta = 0;
- Dense / Conv 3x3 SAME: Sigma' = W_std^2 A(Sigma) + b_std^2, Theta' = W_std^2 A(Theta) + Sigma', with A the
  identity (Dense) or the mean of K(p+d, p'+d) over the 9 shifts d, zero outside the image (Conv);
- ReLU: s = sqrt(max(q q' - c^2, 0)), theta = arctan2(s, c); Sigma' = (s + (pi - theta) c) / (2 pi),
  Theta' = Theta (pi - theta) / (2 pi), where q, q' are the images' own variances at the two pixels;
- AvgPool 2x2: the mean of K over both windows; global average pool: the mean over all pixel pairs.

Image kernels are (H, W, H, W) per image pair. They are computed for blocks of pairs sized to a memory
budget; the 3x3 conv average is separable (rows, then columns), and a symmetric kernel computes only the
upper triangle of blocks. Each image's own kernel is computed once for the variances q its pairs need.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .models import layer_specs

BLOCK_ELEMENTS = 2 ** 18  # image-pair kernel entries per block tensor (2 MB in float64)


def _conv_sum(K: torch.Tensor) -> torch.Tensor:
    """(N, H, W, H, W): sum of K(p + d, p' + d) over d in {-1, 0, 1}^2, zero outside the image.

    Separable: shift (h, h') together, then (w, w'); slice-adds need no padded copy."""
    out = K.clone()
    out[:, 1:, :, 1:] += K[:, :-1, :, :-1]
    out[:, :-1, :, :-1] += K[:, 1:, :, 1:]
    res = out.clone()
    res[:, :, 1:, :, 1:] += out[:, :, :-1, :, :-1]
    res[:, :, :-1, :, :-1] += out[:, :, 1:, :, 1:]
    return res


def _pool(K: torch.Tensor) -> torch.Tensor:
    """(N, H, W, H, W) -> (N, H/2, W/2, H/2, W/2): mean over both 2x2 windows, one axis at a time
    (strided pair sums are much faster than one reduction over a 9-D view)."""
    for dim in (1, 2, 3, 4):
        even = [slice(None)] * K.dim()
        odd = list(even)
        even[dim], odd[dim] = slice(0, None, 2), slice(1, None, 2)
        K = K[tuple(even)] + K[tuple(odd)]
    return K.div_(16.0)


def _relu(S, T, qa, qb, diagonal, float32):
    """ReLU step, in place on S and T; qa/qb broadcast against S (the two inputs' own variances).

    `diagonal` marks entries of an input with itself at one position, where q q' - c^2 is 0 exactly but
    its floating-point value (a fused multiply-add residual) is not."""
    qq = qa * qb
    if float32:
        root = torch.sqrt(qq)
        S = torch.maximum(torch.minimum(S, root), -root)          # correlation clamped to [-1, 1]
    s = qq.addcmul_(S, S, value=-1).clamp_(min=0).sqrt_()         # sqrt(max(q q' - c^2, 0))
    theta = torch.atan2(s, S)
    if diagonal is not None:  # an input with itself at the same position: angle exactly 0
        theta.masked_fill_(diagonal, 0.0)
        s.masked_fill_(diagonal, 0.0)
    pi_minus = theta.neg_().add_(math.pi)
    if T is not None:
        T = T.mul_(pi_minus).div_(2 * math.pi)
    S = S.mul_(pi_minus).add_(s).div_(2 * math.pi)
    return S, T


def _propagate(specs, S, T, q_pairs, self_mode, float32, spatial):
    """Run the recursion from input kernels S (and T) through `specs`.

    spatial: S is (N, H, W, H, W), else (N,). In self mode (each row pairs an image with itself) the
    variances are read off S's diagonal and recorded; otherwise q_pairs gives (qa, qb) per ReLU.
    Returns (S, T, recorded variances).
    """
    recorded = []
    relu_i = 0
    for spec in specs:
        kind = spec["kind"]
        if kind in ("dense", "conv"):
            w2, b2 = spec["W_std"] ** 2, spec["b_std"] ** 2
            if kind == "conv":  # the 1/9 of the 3x3 average goes into the weight factor
                S, T, w2 = _conv_sum(S), (None if T is None else _conv_sum(T)), w2 / 9
            else:
                S, T = S.clone(), (None if T is None else T.clone())
            S = S.mul_(w2).add_(b2)
            T = S.clone() if T is None else T.mul_(w2).add_(S)
        elif kind == "relu":
            if spatial:
                N, H, W = S.shape[:3]
                if self_mode:
                    # diagonal over (h, h') gives (N, W, W', H); then over (w, w') gives (N, H, W)
                    q = torch.diagonal(torch.diagonal(S, dim1=1, dim2=3), dim1=1, dim2=2).clone()
                    recorded.append(q)
                    qa, qb = q[:, :, :, None, None], q[:, None, None, :, :]
                    eye = torch.eye(H * W, dtype=torch.bool, device=S.device).reshape(1, H, W, H, W)
                else:
                    qa, qb = q_pairs[relu_i]
                    eye = None
            else:
                if self_mode:
                    recorded.append(S.clone())  # S is updated in place below
                    qa = qb = recorded[-1]
                    eye = torch.ones_like(S, dtype=torch.bool)
                else:
                    qa, qb = q_pairs[relu_i]
                    eye = None
            S, T = _relu(S, T, qa, qb, eye, float32)
            relu_i += 1
        elif kind == "avgpool":
            S, T = _pool(S), _pool(T)
        elif kind == "global_avg_pool":
            S, T = S.mean(dim=(1, 2, 3, 4)), T.mean(dim=(1, 2, 3, 4))
            spatial = False
        elif kind == "flatten":
            pass  # handled when forming the input kernel
        else:
            raise ValueError(f"no kernel rule for layer kind {kind!r}")
    return S, T, recorded


def _input_kernel(xa, xb, spatial):
    """Sigma at the input: (Na, Nb, H, W, H, W) per pixel pair / C, or (Na, Nb) = <x, x'> / D."""
    if spatial:
        C = xa.shape[1]
        return torch.einsum("achw,bcij->abhwij", xa, xb) / C
    xa, xb = xa.reshape(len(xa), -1), xb.reshape(len(xb), -1)
    return xa @ xb.T / xa.shape[1]


def infinite_kernels(arch: str, in_shape, x1, x2=None, depth=None, W_std: float = 2 ** 0.5, b_std: float = 0.0,
                     dtype=torch.float64, batch_size=None, max_memory_gb: float = 2.0, progress=None):
    """Infinite-width (NTK, NNGP), each (n1, n2), of `arch` (as in models.build) between x1 and x2.

    batch_size: images per block side (default: blocks of about BLOCK_ELEMENTS entries, within
    `max_memory_gb`).
    """
    specs = layer_specs(arch, 1, in_shape, 1, depth=depth, W_std=W_std, b_std=b_std)
    device = x1.device if torch.is_tensor(x1) else torch.device("cpu")
    x1 = torch.as_tensor(x1).to(device=device, dtype=dtype)
    sym = x2 is None
    x2 = x1 if sym else torch.as_tensor(x2).to(device=device, dtype=dtype)
    spatial = specs[0]["kind"] == "conv"
    float32 = dtype != torch.float64
    n1, n2 = len(x1), len(x2)
    if spatial:
        P = x1.shape[2] * x1.shape[3]
        per_pair = 8 * P * P * x1.element_size()  # S, T and the temporaries of one step
        # Small blocks are fastest: tensors of a few MB are reused by the allocator, while large ones are
        # fresh pages every time (measured: 32x32 images, 1 pair per block 3x faster than 16).
        fits = max(1, int(math.sqrt(max_memory_gb * 1e9 / per_pair)))
        block = batch_size or max(1, min(fits, int(math.sqrt(BLOCK_ELEMENTS / (P * P)))))
    else:
        block = batch_size or max(n1, n2)

    def self_kernels(x):
        """Each input with itself: the variances before every ReLU, and its final (NTK, NNGP) value."""
        step = block * block if spatial else len(x)
        qs, diag_ntk, diag_nngp = [], [], []
        for lo in range(0, len(x), step):
            xb = x[lo:lo + step]
            if spatial:
                S0 = torch.stack([_input_kernel(xi[None], xi[None], True)[0, 0] for xi in xb])
            else:
                S0 = (xb.reshape(len(xb), -1) ** 2).mean(1)
            S, T, q = _propagate(specs, S0, None, None, True, float32, spatial)
            qs.append(q)
            diag_nngp.append(S)
            diag_ntk.append(T)
        return [torch.cat(q) for q in zip(*qs)], torch.cat(diag_ntk), torch.cat(diag_nngp)

    q1, self_ntk, self_nngp = self_kernels(x1)
    q2 = q1 if sym else self_kernels(x2)[0]
    ntk = torch.empty((n1, n2), dtype=dtype, device=device)
    nngp = torch.empty((n1, n2), dtype=dtype, device=device)
    rows = [(i, min(i + block, n1)) for i in range(0, n1, block)]
    cols = rows if sym else [(j, min(j + block, n2)) for j in range(0, n2, block)]
    pairs = [(r, c) for ri, r in enumerate(rows) for ci, c in enumerate(cols) if not sym or ci >= ri]
    for done, ((i0, i1), (j0, j1)) in enumerate(pairs, 1):
        a, b = i1 - i0, j1 - j0
        S0 = _input_kernel(x1[i0:i1], x2[j0:j1], spatial)
        S0 = S0.reshape((a * b,) + S0.shape[2:])
        if spatial:
            qp = [(qa[i0:i1, None, :, :, None, None].expand(a, b, *qa.shape[1:], 1, 1).reshape(a * b, *qa.shape[1:], 1, 1),
                   qb[None, j0:j1, None, None].expand(a, b, 1, 1, *qb.shape[1:]).reshape(a * b, 1, 1, *qb.shape[1:]))
                  for qa, qb in zip(q1, q2)]
        else:
            qp = [(qa[i0:i1, None].expand(a, b).reshape(-1), qb[None, j0:j1].expand(a, b).reshape(-1))
                  for qa, qb in zip(q1, q2)]
        S, T, _ = _propagate(specs, S0, None, qp, False, float32, spatial)
        nngp[i0:i1, j0:j1] = S.reshape(a, b)
        ntk[i0:i1, j0:j1] = T.reshape(a, b)
        if sym and i0 == j0:
            # an input with itself: the self recursion has exact zero angles where the cross one has the
            # rounding of two separately computed covariances (about 1e-8 in the angle)
            idx = torch.arange(i0, i1, device=device)
            nngp[idx, idx], ntk[idx, idx] = self_nngp[i0:i1], self_ntk[i0:i1]
        if sym and i0 != j0:
            nngp[j0:j1, i0:i1] = nngp[i0:i1, j0:j1].T
            ntk[j0:j1, i0:i1] = ntk[i0:i1, j0:j1].T
        if progress is not None and len(pairs) > 1:
            progress(f"infinite kernel blocks {done}/{len(pairs)}")
    return ntk, nngp
