"""The production infinite-kernel engine (``implementation='blocks'``): the recursion of kernels/infinite/api.py and
nets/layers.py, computed for blocks of input pairs sized to a memory budget and fused for speed. It gives the
plain walk's numbers (tests/test_infinite.py holds it to that walk and to neural-tangents).

Image kernels are (H, W, H, W) per image pair, computed by `_PairBlocks` for blocks of pairs (a symmetric
kernel computes only the upper triangle of blocks). Each image's own kernel is computed first, once, for
the variances q that its pairs' ReLUs need. On the CPU in float64 each conv-ReLU(-pool) step of a block
runs in the fused C kernel of kernels/infinite/native.py (pairstep.c), which works slab by slab in the cache; otherwise
(CUDA, float32, no C compiler, native=False) the torch path computes the same numbers: the first conv's
kernel is one matmul of 3x3 patches; the later 3x3 averages are separable (rows, then columns); every step
writes into buffers reused from block to block (fresh multi-MB tensors cost page faults that dominated);
and each conv's affine map with the ReLU after it runs as one fused loop compiled by torch.compile when
asked (the ReLU's sqrt and arctan2 per pixel pair are most of the time: fused, about 3x faster than one
eager pass per operation). Without a compiler the same function runs eagerly and gives the same numbers
to rounding. Vector networks (the MLP, and the dense head after the global pool) use `_propagate`.

Architectures it handles: dense/nonlinearity stacks (images flattened first), and 3x3 conv + nonlinearity
blocks with 2x2 average pools, a global average pool and a dense/nonlinearity head; `supports` says whether
a layer list is one. It reads each layer's rule off the layer (nets/layers.py, `Layer`): its affine factors,
its pair step and own step, its pooling window; it names no layer class.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from . import native as native_kernel
from ...jobs import Progress
from ...nets.layers import Kernel

# image-pair kernel entries per block tensor (2 MB / 8 MB in float64) by path: measured fastest for the eager
# ops, for the compiled ReLU step (which keeps fewer temporaries in the cache; on 8x8 images 8 or 16 images
# a side) and for the native step (16 images a side on 8x8: a block's covariances stay in the cache)
BLOCK_ELEMENTS = {"eager": 2 ** 18, "compiled": 2 ** 20, "native": 2 ** 20}
COMPILE_MIN_ENTRIES = 2 ** 29  # pixel-pair entries of a job above which compile=None compiles (eager: ~15 s)


def _followed_by_pair_step(layers, i) -> bool:
    """Whether layers[i + 1] is a nonlinearity with a pair step (fused with the affine map of layers[i])."""
    return i + 1 < len(layers) and layers[i + 1].pair_step is not None


def _propagate(layers, kernel: Kernel, q_pairs, self_mode, float32):
    """Run the recursion for vector kernels (N,) through dense/nonlinearity `layers` (an MLP, or the dense head
    after a global average pool). In self mode (each entry pairs an input with itself, angle exactly 0: the
    nonlinearity's `own_step`) the variances are recorded; otherwise q_pairs gives (qa, qb) per nonlinearity.
    Returns (Kernel, recorded variances).
    """
    S, T = kernel.nngp, kernel.ntk
    recorded = []
    step_i, i = 0, 0
    while i < len(layers):
        layer = layers[i]
        if layer.has_params:
            w2, b2 = layer.affine_factors()
            if _followed_by_pair_step(layers, i):
                nonlinearity = layers[i + 1]
                if self_mode:
                    q = S * w2 + b2
                    T = q if T is None else T * w2 + q
                    recorded.append(q)
                    S, T = nonlinearity.own_step(q, T)
                else:
                    out_S, out_T = torch.empty_like(S), torch.empty_like(S)
                    _affine_then(nonlinearity.pair_step)(S, T, *q_pairs[step_i], out_S, out_T, w2, b2, float32)
                    S, T = out_S, out_T
                step_i, i = step_i + 1, i + 2
                continue
            S = S * w2 + b2
            T = S if T is None else T * w2 + S
        elif not layer.flattens:  # flatten: handled when forming the input kernel
            raise ValueError(f"no vector-kernel rule for layer type {layer.type!r} here")
        i += 1
    return Kernel(nngp=S, ntk=T), recorded


_AFFINE_THEN = {}


def _affine_then(step):
    """The affine map, then a nonlinearity's pair `step`, as one function of (Sc, Tc, qa, qb, out_S, out_T,
    w2, b2, float32): Sigma = w2 Sc + b2, Theta = w2 Tc + Sigma (Theta = Sigma when Tc is None), the step,
    written into out_S and out_T. One fused loop when compiled. The exact zero angles of an image with itself
    are restored by the caller (`_PairBlocks.selves`)."""
    if step not in _AFFINE_THEN:
        def affine_step(Sc, Tc, qa, qb, out_S, out_T, w2: float, b2: float, float32: bool):
            S = Sc * w2 + b2
            T = S if Tc is None else Tc * w2 + S
            S, T = step(S, T, qa * qb, clip=float32)
            out_S.copy_(S)
            out_T.copy_(T)
        _AFFINE_THEN[step] = affine_step
    return _AFFINE_THEN[step]


_FUSED = {}


def _fused_affine_step(step, use_compile: bool):
    """`_affine_then(step)`, compiled by torch.compile when asked and possible, else eager (one compiled
    function per step and process; dynamic shapes, so blocks of every size share it)."""
    eager = _affine_then(step)
    if not use_compile:
        return eager
    if step not in _FUSED:
        compiled = torch.compile(eager, dynamic=True)

        def fn(*args):
            if _FUSED.get("failed"):
                return eager(*args)
            try:
                return compiled(*args)
            except Exception as err:  # no C++ compiler, unsupported device, ...: same numbers, slower
                _FUSED["failed"] = True
                warnings.warn(f"torch.compile of the infinite-kernel nonlinearity step failed "
                              f"({type(err).__name__}: {err}); continuing eagerly", RuntimeWarning)
                return eager(*args)
        _FUSED[step] = fn
    return _FUSED[step]


class _PairBlocks:
    """The Kernel of blocks of image pairs through the spatial layers, then the dense head.

    Buffers are allocated once per shape and reused by every block of the same size."""

    def __init__(self, layers, in_shape, dtype, device, use_compile, use_native=False):
        self.layers, self.dtype, self.device = layers, dtype, device
        self.C = in_shape[0]
        self.float32 = dtype != torch.float64
        self.use_compile = use_compile
        self.native = use_native
        self.buffers = {}

    def _buf(self, name, shape):
        b = self.buffers.get(name)
        if b is None or tuple(b.shape) != tuple(shape):
            b = self.buffers[name] = torch.empty(shape, dtype=self.dtype, device=self.device)
        return b

    def _conv_sum(self, K):
        """(2, N, H, W, H, W) (Sigma and Theta stacked): the sum of K(p + d, p' + d) over d in {-1, 0, 1}^2,
        zero outside the image, into reused buffers. Separable: shift (h, h') together, then (w, w'); each
        pass is one out-of-place add plus one in-place add, the first row (column) copied."""
        tmp, out = self._buf("conv_tmp", K.shape), self._buf("conv_out", K.shape)
        for src, dst, (d1, d2) in ((K, tmp, (2, 4)), (tmp, out, (3, 5))):
            def sl(lo, hi, dims=(d1, d2)):
                index = [slice(None)] * src.dim()
                for d in dims:
                    index[d] = slice(lo, hi)
                return tuple(index)
            torch.add(src[sl(1, None)], src[sl(None, -1)], out=dst[sl(1, None)])
            for d in (d1, d2):  # first row (column) of either image: no neighbour before it
                dst[sl(0, 1, (d,))].copy_(src[sl(0, 1, (d,))])
            dst[sl(None, -1)] += src[sl(1, None)]
        return out

    def _pool(self, K):
        """(2, N, H, W, H, W) -> (2, N, H/2, W/2, H/2, W/2): the mean over both 2x2 windows, one axis at a
        time (strided pair sums are much faster than one reduction over a 9-D view), into reused buffers."""
        for dim in (2, 3, 4, 5):
            even = [slice(None)] * K.dim()
            odd = list(even)
            even[dim], odd[dim] = slice(0, None, 2), slice(1, None, 2)
            shape = list(K.shape)
            shape[dim] //= 2
            K = torch.add(K[tuple(even)], K[tuple(odd)], out=self._buf(f"pool{dim}", shape))
        return K.div_(16.0)

    def __call__(self, xa, xb, qa_list, qb_list) -> Kernel:
        """Every pair of xa (a, C, H, W) with xb (b, C, H, W); q*_list: the images' variances (n, h, w)
        before every ReLU (from `selves`). Returns the Kernel, each field (a, b)."""
        return self._run(xa, xb, qa_list, qb_list)[0]

    def selves(self, x):
        """Each image of x with itself: (variances before every ReLU, each (n, h, w); the Kernel, each (n,)).

        The ReLU angle of an image with itself at one position is exactly 0; the fused step computes it
        from rounded numbers, so those entries are then set to their exact values (Sigma/2, Theta/2)."""
        kernel, q = self._run(x, x, None, None)
        return q, kernel

    def _run(self, xa, xb, qa_list, qb_list):
        paired = qa_list is None  # pairs (x_i, x_i), recording the variances
        a, b = len(xa), (1 if paired else len(xb))
        layers, step_i, sigma_theta, i, recorded = self.layers, 0, None, 0, []
        while i < len(layers):
            layer = layers[i]
            if layer.spatial:
                if not _followed_by_pair_step(layers, i):
                    raise ValueError("the pair-block path expects every conv to be followed by a nonlinearity")
                q = None if paired else (qa_list[step_i], qb_list[step_i])
                step = self._native_conv_step if self.native else self._torch_conv_step
                sigma_theta, i = step(i, sigma_theta, xa, xb, q, step_i, recorded)
                step_i += 1
                continue
            if layer.pool_window == 2:
                sigma_theta = self._pool(sigma_theta)
            elif layer.pools and layer.pool_window is None:
                S, T = sigma_theta.mean(dim=(2, 3, 4, 5)).unbind(0)  # sigma_theta stacks (Sigma, Theta)
                if paired:  # the dense head's own variances are recorded too
                    kernel, head = _propagate(layers[i + 1:], Kernel(nngp=S, ntk=T), None, True, self.float32)
                    return kernel, recorded + head
                q_pairs = [(qa[:, None].expand(a, b).reshape(-1), qb[None, :].expand(a, b).reshape(-1))
                           for qa, qb in zip(qa_list[step_i:], qb_list[step_i:])]
                kernel, _ = _propagate(layers[i + 1:], Kernel(nngp=S, ntk=T), q_pairs, False, self.float32)
                return Kernel(nngp=kernel.nngp.reshape(a, b), ntk=kernel.ntk.reshape(a, b)), recorded
            else:
                raise ValueError(f"no pair-block rule for layer type {layer.type!r}")
            i += 1
        raise ValueError("image architectures end with a global average pool")

    def _first_conv(self, xa, xb, paired):
        """Sigma summed over the first conv's 3x3 window, from the images: <patch(x, p), patch(x', p')>,
        (a b, H, W, H, W)."""
        a, b = len(xa), (1 if paired else len(xb))
        H, W = xa.shape[2:]
        pa = F.unfold(xa, 3, padding=1).transpose(1, 2)  # (a, H W, C 9)
        pb = F.unfold(xb, 3, padding=1)                   # (b, C 9, H W)
        out = self._buf("input", (a, b, H * W, H * W))
        if paired:
            torch.bmm(pa, pb, out=out.view(a, H * W, H * W))
        else:
            torch.matmul(pa[:, None], pb[None], out=out)
        return out.view(a * b, H, W, H, W)

    def _torch_conv_step(self, i, sigma_theta, xa, xb, q, step_i, recorded):
        """layers[i] (a conv) and the nonlinearity after it by torch operations, for all pairs of xa and xb whose
        variances are q = (qa, qb); q None: each image of xa with itself, its variances computed here and
        appended to `recorded`, the exact diagonal restored. Returns (Sigma and Theta stacked, i + 2)."""
        conv, nonlinearity, paired = self.layers[i], self.layers[i + 1], q is None
        w2, b2 = conv.affine_factors()
        if sigma_theta is None:
            Sc, Tc, w2 = self._first_conv(xa, xb, paired), None, w2 / (9 * self.C)
        else:
            conv_sums = self._conv_sum(sigma_theta)
            Sc, Tc, w2 = conv_sums[0], conv_sums[1], w2 / 9
        if paired:
            diag_S = _pixel_diagonal(Sc) * w2 + b2   # each image's variances q at every pixel
            diag_T = diag_S if Tc is None else _pixel_diagonal(Tc) * w2 + diag_S
            recorded.append(diag_S)
            qa, qb = diag_S[:, :, :, None, None], diag_S[:, None, None]
        else:
            a, b = len(xa), len(xb)
            qa, qb = q
            h, w = qa.shape[1:]
            qa = qa[:, None, :, :, None, None].expand(a, b, h, w, 1, 1).reshape(a * b, h, w, 1, 1)
            qb = qb[None, :, None, None].expand(a, b, 1, 1, h, w).reshape(a * b, 1, 1, h, w)
        sigma_theta = self._buf(f"relu{step_i}", (2,) + tuple(Sc.shape))
        fused = _fused_affine_step(nonlinearity.pair_step, self.use_compile)
        fused(Sc, Tc, qa, qb, sigma_theta[0], sigma_theta[1], w2, b2, self.float32)
        if paired:
            _restore_own(sigma_theta, nonlinearity, diag_S, diag_T)
        return sigma_theta, i + 2

    def _native_conv_step(self, i, sigma_theta, xa, xb, q, step_i, recorded):
        """layers[i] (a conv), the ReLU after it and a 2x2 pooling after that if there is one, by the fused C
        kernel (native.py) for all pairs of xa and xb, whose variances are q = (qa, qb); q None: each image
        of xa with itself, its variances computed here and appended to `recorded`, the pooling left to the
        caller (the exact diagonal is restored first). Returns (Sigma and Theta stacked, next layer index)."""
        conv, layers = self.layers[i], self.layers
        w2, b2 = conv.affine_factors()
        w2 = w2 / 9
        selves = q is None
        a = len(xa)
        b = 1 if selves else len(xb)
        first = sigma_theta is None  # the kernel forms Sigma = sum over channels of x x' per pixel pair itself
        if first:
            H, W = xa.shape[2:]
            xa, xb, w2 = xa.contiguous(), (xa if selves else xb).contiguous(), w2 / self.C
            S_T = {"xa": xa, "xb": xb}
        else:
            H, W = sigma_theta.shape[2:4]
            S_T = {"S": sigma_theta[0], "T": sigma_theta[1]}
        pool = not selves and i + 2 < len(layers) and layers[i + 2].pool_window == 2
        h, w = (H // 2, W // 2) if pool else (H, W)
        out = self._buf(f"relu{step_i}", (2, a * b, h, w, h, w))
        if selves:  # the conv output's diagonal: the 3x3 sums of the input's diagonal
            diag_in = (xa * xa).sum(1) if first else _pixel_diagonal(sigma_theta[0])
            qa = qb = _box3(diag_in) * w2 + b2
            diag_T = qa if first else _box3(_pixel_diagonal(sigma_theta[1])) * w2 + qa
            recorded.append(qa)
        else:
            qa, qb = q
        native_kernel.pair_step(qa.contiguous(), qb.contiguous(), w2, b2, pool, out[0], out[1], selves=selves,
                                **S_T)
        if selves:  # exact zero angles, as in the torch path
            _restore_own(out, layers[i + 1], qa, diag_T)
        return out, i + (3 if pool else 2)


def _restore_own(sigma_theta, nonlinearity, diag_S, diag_T):
    """Each image's own pixel pairs (p, p), whose angle is exactly 0, set to the nonlinearity's `own_step`."""
    own_S, own_T = nonlinearity.own_step(diag_S, diag_T)
    _pixel_diagonal(sigma_theta[0]).copy_(own_S)
    _pixel_diagonal(sigma_theta[1]).copy_(own_T)


def _box3(d):
    """(n, H, W) -> the sum over each 3x3 neighbourhood, zero outside."""
    ones = torch.ones((1, 1, 3, 3), dtype=d.dtype, device=d.device)
    return F.conv2d(d[:, None], ones, padding=1)[:, 0]


def _pixel_diagonal(K):
    """(N, H, W, H, W) -> (N, H, W) view of K(p, p): diagonal over (h, h'), then over (w, w')."""
    return torch.diagonal(torch.diagonal(K, dim1=1, dim2=3), dim1=1, dim2=2)


def _input_kernel(xa, xb):
    """Sigma at the input of a vector network: (Na, Nb) = <x, x'> / D."""
    xa, xb = xa.reshape(len(xa), -1), xb.reshape(len(xb), -1)
    return xa @ xb.T / xa.shape[1]


def supports(layers) -> bool:
    """Whether this engine has rules for every layer of the list (else kernels/infinite/api.py walks the plain
    path): each layer's own class declares `on_blocks` (a subclass inherits no claim to its parent's rule)."""
    return all(type(layer).__dict__.get("on_blocks", False) for layer in layers)


def _block_size(x1, n1, n2, spatial, batch_size, max_memory_gb, path) -> int:
    """Images per block side: blocks of about BLOCK_ELEMENTS entries for the path (blocks of a few MB per
    buffer stay in the cache; measured: 32x32 images, 1 pair per block fastest), within the budget."""
    if not spatial:
        return batch_size or max(n1, n2)
    P = x1.shape[2] * x1.shape[3]
    per_pair = 16 * P * P * x1.element_size()  # the reused buffers plus an eager step's temporaries
    fits = max(1, int(math.sqrt(max_memory_gb * 1e9 / per_pair)))
    return batch_size or max(1, min(fits, int(math.sqrt(BLOCK_ELEMENTS[path] / (P * P)))))


def _choose_path(layers, x1, n1, n2, dtype, compile, native):
    """(use_native, compile, path name) for image inputs: the C kernel on the CPU in float64 when it builds
    (native=None) or when asked (True: an error where it cannot run); compile=None compiles the torch
    path's ReLU steps when the job has at least COMPILE_MIN_ENTRIES pixel-pair entries."""
    device = x1.device
    native_steps = all(layer.pair_step in (None, native_kernel.PAIR_STEP) for layer in layers)
    native_ok = device.type == "cpu" and dtype == torch.float64 and native_steps
    if native and not native_steps:
        raise RuntimeError("native=True: the fused C kernel computes the ReLU's step only")
    if native and not native_ok:
        raise RuntimeError(f"native=True: the fused C kernel runs on the CPU in float64 only, not on "
                           f"{device.type} in {dtype}")
    if native and not native_kernel.available():
        raise RuntimeError(f"native=True: the fused C kernel does not build here "
                           f"({native_kernel.unavailable_reason()})")
    use_native = native_ok and native is not False and native_kernel.available()
    P = x1.shape[2] * x1.shape[3]
    if compile is None:  # the native kernel leaves only each image's own kernel to the torch path
        compile = not use_native and n1 * n2 * P * P >= COMPILE_MIN_ENTRIES
    return use_native, bool(compile), "native" if use_native else "compiled" if compile else "eager"


def _self_kernels(layers, blocks, x, block, float32):
    """Each input with itself: the variances before every ReLU, and its final Kernel value."""
    step = block * block if blocks is not None else len(x)
    qs, kernels = [], []
    for lo in range(0, len(x), step):
        xb = x[lo:lo + step]
        if blocks is not None:
            q, kernel = blocks.selves(xb)
        else:
            kernel, q = _propagate(layers, Kernel(nngp=(xb.reshape(len(xb), -1) ** 2).mean(1), ntk=None), None,
                                   True, float32)
        qs.append(q)
        kernels.append(kernel)
    return ([torch.cat(q) for q in zip(*qs)],
            Kernel(nngp=torch.cat([k.nngp for k in kernels]), ntk=torch.cat([k.ntk for k in kernels])))


def block_kernels(layers, x1, x2, sym, batch_size=None, max_memory_gb=2.0, progress=None, compile=None,
                  native=None) -> Kernel:
    """The Kernel (n1, n2) of x1 with x2 (x2 is x1 when `sym`), block by block (see the module's docstring)."""
    dtype, device = x1.dtype, x1.device
    spatial = layers[0].spatial
    float32 = dtype != torch.float64
    n1, n2 = len(x1), len(x2)
    blocks = None
    path = "vector"
    if spatial:
        use_native, use_compile, path = _choose_path(layers, x1, n1, n2, dtype, compile, native)
        blocks = _PairBlocks(layers, x1.shape[1:], dtype, device, use_compile, use_native)
    block = _block_size(x1, n1, n2, spatial, batch_size, max_memory_gb, path)
    if spatial and progress:
        unbuilt = device.type == "cpu" and dtype == torch.float64 and native is None and not use_native
        why = f" (native kernel: {native_kernel.unavailable_reason()})" if unbuilt else ""
        progress(f"image pairs by the {path} path{why}, blocks of {block} images a side")
    q1, self_kernel = _self_kernels(layers, blocks, x1, block, float32)
    q2 = q1 if sym else _self_kernels(layers, blocks, x2, block, float32)[0]
    ntk = torch.empty((n1, n2), dtype=dtype, device=device)
    nngp = torch.empty((n1, n2), dtype=dtype, device=device)
    rows = [(i, min(i + block, n1)) for i in range(0, n1, block)]
    cols = rows if sym else [(j, min(j + block, n2)) for j in range(0, n2, block)]
    pairs = [(r, c) for ri, r in enumerate(rows) for ci, c in enumerate(cols) if not sym or ci >= ri]
    tick = Progress(progress, "infinite kernel blocks", len(pairs))
    for done, ((i0, i1), (j0, j1)) in enumerate(pairs, 1):
        a, b = i1 - i0, j1 - j0
        if spatial:
            kernel = blocks(x1[i0:i1], x2[j0:j1], [q[i0:i1] for q in q1], [q[j0:j1] for q in q2])
        else:
            qp = [(qa[i0:i1, None].expand(a, b).reshape(-1), qb[None, j0:j1].expand(a, b).reshape(-1))
                  for qa, qb in zip(q1, q2)]
            kernel, _ = _propagate(layers, Kernel(nngp=_input_kernel(x1[i0:i1], x2[j0:j1]).reshape(-1), ntk=None),
                                   qp, False, float32)
        nngp[i0:i1, j0:j1] = kernel.nngp.reshape(a, b)
        ntk[i0:i1, j0:j1] = kernel.ntk.reshape(a, b)
        if sym and i0 == j0:
            # an input with itself: the self recursion has exact zero angles where the cross one has the
            # rounding of two separately computed covariances (about 1e-8 in the angle)
            idx = torch.arange(i0, i1, device=device)
            nngp[idx, idx], ntk[idx, idx] = self_kernel.nngp[i0:i1], self_kernel.ntk[i0:i1]
        if sym and i0 != j0:
            nngp[j0:j1, i0:i1] = nngp[i0:i1, j0:j1].T
            ntk[j0:j1, i0:i1] = ntk[i0:i1, j0:j1].T
        tick(done)
    return Kernel(nngp=nngp, ntk=ntk)
