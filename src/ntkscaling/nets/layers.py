"""What each layer means, in one class per layer type: its forward pass, its empirical-NTK rule and its
infinite-width kernel step. A network (nets/models.py), its eNTK (kernels/empirical/api.py) and its
infinite kernel (kernels/infinite/api.py) are each a walk over the same list of these layers; this file is
their plain definition. The fast engines (kernels/empirical/layerwise.py, kernels/infinite/blocks.py and
native.py) fuse these steps and are tested against them.

Every layer has
- ``forward(h)``: the finite network's computation (NCHW images, (N, D) vectors);
- ``vjp(g, h)``: the gradient w.r.t. its input h, given the gradient g w.r.t. its output (the eNTK walks
  back from each logit through these);
- ``infinite(kernel)``: its step on the infinitely wide network's `Kernel` (NNGP and NTK of every pair of
  inputs; image kernels hold a pixel pair's entry in the trailing (H, W, H, W) axes).

A layer with parameters (Dense, Conv) adds its eNTK features: ``entk_features(A, G)`` from its input A
(n, ...) and the output gradients G (n, C', ...) of C' logits, ``feature_shapes(C')`` (per sample: the
memory they hold) and ``entk_gram(f1, f2, kind)``, its term of the kernel between two sets of samples.
Parameters are raw N(0, 1) draws in the NTK parameterization (neural-tangents' convention: the scale
W_std/sqrt(fan_in) sits in the forward pass), scaled draws in the standard one.

To add a layer type: one class here with these methods and its `type`, added to `LAYER_TYPES`, and one
test in tests/test_layers.py against the autograd Jacobian and a neural-tangents value.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn


# What each engine reads off a layer beside its forward pass. A layer runs through an engine only when these
# come from its own class or from a class that defines no forward of its own (models.own_rules_problem): a
# subclass that changes `forward` but inherits its parent's `vjp` would be computed as its parent.
ENTK_RULES = ("vjp", "tape_save", "tape_vjp", "entk_features", "entk_gram", "feature_shapes", "scaled_weight",
              "channelwise", "has_params", "pools", "folds_pooling", "pool_factor", "unpool", "unfolds",
              "unfolded_elements", "has_bias_features", "readout_factorizes")
INFINITE_RULES = ("infinite", "affine_factors", "pair_step", "own_step", "pool_window", "spatial", "flattens")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """The two kernels of the infinite-width recursion, by name (never by position: unpacking one raises, so
    no caller can swap them): `nngp` (Sigma, the covariance of the layer's outputs, averaged over its
    channels) and `ntk` (Theta; None before the first layer with parameters). Each (n1, n2) for vectors or
    (n1, n2, H, W, H, W) for images. In the plain walk both sides are the same inputs, so each input's own
    variances (what a ReLU needs) are the diagonal. Every public infinite-kernel function returns one."""
    nngp: torch.Tensor
    ntk: torch.Tensor | None

    def __iter__(self):
        raise TypeError("a Kernel is read by name (kernel.ntk, kernel.nngp), never unpacked by position")

    def map(self, step) -> "Kernel":
        """The same linear step applied to both kernels."""
        return Kernel(nngp=step(self.nngp), ntk=None if self.ntk is None else step(self.ntk))


def input_kernel(x: torch.Tensor) -> Kernel:
    """Sigma of the inputs themselves: <x, x'> / D for vectors; for images, per pixel pair, the channel sum
    of x x' / C (so that a flatten, the mean over pixels of its diagonal, gives <x, x'> / D)."""
    if x.dim() == 2:
        return Kernel(nngp=x @ x.T / x.shape[1], ntk=None)
    return Kernel(nngp=torch.einsum("achw,bcHW->abhwHW", x, x) / x.shape[1], ntk=None)


def logit_gram(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Inner products of per-sample, per-logit features a (n1, C', D) and b (n2, C', D): every logit pair
    (n1, n2, C', C') for the full kind, else summed over the logits (n1, n2)."""
    n1, Cp, n2 = a.shape[0], a.shape[1], b.shape[0]
    if kind == "full":
        return (a.reshape(n1 * Cp, -1) @ b.reshape(n2 * Cp, -1).T).view(n1, Cp, n2, Cp).transpose(1, 2)
    return a.reshape(n1, -1) @ b.reshape(n2, -1).T


def kernel_from_features(param_layers, f1: list[dict], f2: list[dict], kind: str) -> torch.Tensor:
    """The eNTK between two sets of samples from each parametrized layer's features: the layers' Gram terms
    summed (divided by the number of logits for the mean kind): (n1, n2), or (n1, n2, C, C) for full."""
    K = None
    for layer, a, b in zip(param_layers, f1, f2):
        term = layer.entk_gram(a, b, kind)
        K = term if K is None else K + term
    return K / param_layers[-1].fan_out if kind == "mean" else K


def mul_into(g: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """g * mask (mask of the product's shape), written into `out`'s storage when given."""
    return g * mask if out is None else torch.mul(g, mask, out=out.view(mask.shape))


class Layer(nn.Module):
    """A layer without parameters. `channelwise`: it never mixes channels (what lets the mean-kind eNTK
    treat the last hidden layer's logits as one, see layerwise.readout_diagonal).

    What the fast eNTK engine (kernels/empirical/layerwise.py) asks of a layer, beside its definition:
    `tape_save(h, next_layer)`, what its backward keeps from the forward pass, and `tape_vjp(g, saved, out)`,
    that backward (by default: the input itself and `vjp`); a `pools` layer's backward is a constant factor
    (`pool_factor`) times a broadcast, which a layer before it that `folds_pooling` (a ReLU) folds into its
    mask (`unpool`).

    What the infinite block engine (kernels/infinite/blocks.py) asks of a layer: `on_blocks`, whether it has
    the layer's rule (declared by the layer's own class, never inherited, so a subclass that changes the
    meaning goes to the plain walk until it says so); `pair_step(S, T, q q')`, a nonlinearity's step that
    needs each input's own variances q (ReLU: `relu_step`), with `own_step(q, T)` its exact value for an input
    with itself; `pool_window`, a pooling's window side (None with `pools`: the mean over all pixels);
    `spatial`, a layer with parameters that mixes neighbouring pixels (a 3x3 conv); `flattens`."""
    type = ""
    channelwise = False
    has_params = False
    pools = False
    folds_pooling = False  # its tape_save pre-scales by a following pooling's factor (a ReLU's mask)
    pair_step = None
    pool_window = None
    spatial = False
    flattens = False

    def tape_save(self, h: torch.Tensor, next_layer) -> object:
        return h

    def tape_vjp(self, g: torch.Tensor, saved, out: torch.Tensor | None = None) -> torch.Tensor:
        """The backward from what `tape_save` kept; `out`: a tensor the result may be written into (a
        layer that does not use it leaves the copy to the caller)."""
        return self.vjp(g, saved).contiguous()

    @classmethod
    def from_spec(cls, spec: dict, parameterization: str) -> "Layer":
        return cls(**{k: v for k, v in spec.items() if k != "type"})

    def vjp(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def infinite(self, kernel: Kernel) -> Kernel:
        raise NotImplementedError


class ParamLayer(Layer):
    """A layer with a weight and a bias: z = W_scale * (weight applied to h) + b_scale * bias. `unfolds`:
    its per-sample weight gradient is G^T times an unfolded input (a conv), which the fast engine forms for
    every logit in one batched matmul; otherwise it keeps the factors A and G (a dense layer)."""
    has_params = True
    unfolds = False
    readout_factorizes = False  # as the last layer, every logit's gradient is W[c] times one map per sample

    def __init__(self, weight_shape: tuple, fan_in: int, W_std: float, b_std: float, parameterization: str):
        super().__init__()
        self.W_std, self.b_std, self.parameterization = W_std, b_std, parameterization
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0]))
        ntk = parameterization == "ntk"
        self.W_scale = W_std / math.sqrt(fan_in) if ntk else 1.0
        self.b_scale = b_std if ntk else 1.0
        self.init_std = (1.0, 1.0) if ntk else (W_std / math.sqrt(fan_in), b_std)

    @classmethod
    def from_spec(cls, spec: dict, parameterization: str) -> "ParamLayer":
        return cls(**{k: v for k, v in spec.items() if k != "type"}, parameterization=parameterization)

    def scaled_weight(self) -> torch.Tensor:
        return self.weight * self.W_scale

    def tape_save(self, h, next_layer):
        return self.scaled_weight()  # formed once for every backward pass

    def feature_shapes(self, logits: int) -> dict[str, tuple]:
        raise NotImplementedError

    def entk_features(self, A: torch.Tensor, G: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def entk_gram(self, f1: dict, f2: dict, kind: str) -> torch.Tensor:
        raise NotImplementedError

    def weight_from_nt(self, W):
        """A neural-tangents weight array in this layer's storage order."""
        raise NotImplementedError

    def affine_factors(self) -> tuple[float, float]:
        """(W_std^2, b_std^2): the infinite step is Sigma' = W_std^2 Sigma + b_std^2, Theta' = W_std^2 Theta +
        Sigma', with Sigma averaged over the layer's fan-in."""
        return self.W_std ** 2, self.b_std ** 2

    def _affine(self, kernel: Kernel) -> Kernel:
        """Sigma' = W_std^2 Sigma + b_std^2 and Theta' = W_std^2 Theta + Sigma', Sigma already averaged over
        this layer's fan-in (a conv's 3x3 window summed by the caller and divided by 9 here)."""
        w2, b2 = self.affine_factors()
        nngp = kernel.nngp * w2 + b2
        return Kernel(nngp=nngp, ntk=nngp if kernel.ntk is None else kernel.ntk * w2 + nngp)


class Dense(ParamLayer):
    """z = W_scale * h @ W^T + b_scale * b, with weight stored (out, in) as in nn.Linear."""
    type = "dense"
    on_blocks = True

    def __init__(self, fan_in: int, fan_out: int, W_std: float, b_std: float, parameterization: str = "ntk"):
        super().__init__((fan_out, fan_in), fan_in, W_std, b_std, parameterization)
        self.fan_in, self.fan_out = fan_in, fan_out

    def forward(self, h):
        return F.linear(h, self.scaled_weight(), self.bias * self.b_scale)

    readout_factorizes = True

    def vjp(self, g, h):
        return g @ self.scaled_weight()

    def tape_vjp(self, g, W, out=None):
        return g @ W

    def feature_shapes(self, logits):
        return {"A": (self.fan_in,), "G": (logits, self.fan_out)}

    def entk_features(self, A, G):
        """The weight gradient of logit c is the outer product G_c A^T: kept as its two factors."""
        return {"A": A, "G": G}

    def entk_gram(self, f1, f2, kind):
        """(W_scale^2 <A, A'> + b_scale^2) <G, G'>: the weights' and the bias's terms, never forming G A^T."""
        lin = (self.W_scale ** 2) * (f1["A"] @ f2["A"].T) + self.b_scale ** 2
        return (lin[:, :, None, None] if kind == "full" else lin) * logit_gram(f1["G"], f2["G"], kind)

    def weight_from_nt(self, W):
        return W.T  # neural-tangents stores (in, out)

    def infinite(self, kernel):
        return self._affine(kernel)


class Conv(ParamLayer):
    """3x3 SAME, stride 1 cross-correlation; weight (C_out, C_in, 3, 3)."""
    type = "conv"
    on_blocks = True
    spatial = True

    def __init__(self, c_in: int, c_out: int, W_std: float, b_std: float, parameterization: str = "ntk"):
        super().__init__((c_out, c_in, 3, 3), c_in * 9, W_std, b_std, parameterization)
        self.c_in, self.c_out = c_in, c_out

    def forward(self, h):
        return F.conv2d(h, self.scaled_weight(), self.bias * self.b_scale, padding=1)

    unfolds = True

    def vjp(self, g, h):
        return F.conv_transpose2d(g, self.scaled_weight(), padding=1)

    def tape_vjp(self, g, W, out=None):
        return F.conv_transpose2d(g, W, padding=1)

    def unfolded_elements(self, logits: int, height: int, width: int) -> int:
        """Elements per sample of the fast engine's unfolded input and of its logits' output gradients."""
        return (self.c_in * 9 + logits * self.c_out) * height * width

    def has_bias_features(self) -> bool:
        """With b_scale 0 the biases add nothing to the kernel, so they get no features."""
        return self.b_scale != 0

    def feature_shapes(self, logits):
        bias = {"Jb": (logits, self.c_out)} if self.has_bias_features() else {}
        return {"J": (logits, self.c_out * self.c_in * 9)} | bias

    def entk_features(self, A, G):
        """Per-sample weight gradients without W_scale, G^T unfold(A) for each logit (n, C', C_out*C_in*9),
        and bias gradients (n, C', C_out) when they count."""
        n, Cp = G.shape[:2]
        patches = F.unfold(A, 3, padding=1).transpose(1, 2)  # (n, H*W, C_in*9)
        J = torch.bmm(G.reshape(n, Cp * self.c_out, -1), patches).view(n, Cp, -1)
        return {"J": J} | ({"Jb": G.sum(dim=(3, 4))} if self.has_bias_features() else {})

    def entk_gram(self, f1, f2, kind):
        term = self.W_scale ** 2 * logit_gram(f1["J"], f2["J"], kind)
        if "Jb" in f1:
            term += self.b_scale ** 2 * logit_gram(f1["Jb"], f2["Jb"], kind)
        return term

    def weight_from_nt(self, W):
        return W.transpose(3, 2, 0, 1)  # neural-tangents stores HWIO

    def infinite(self, kernel):
        """Sigma'(p, p') = W_std^2 mean over the 9 shifts d of Sigma(p + d, p' + d) (zero outside) + b_std^2."""
        return self._affine(kernel.map(lambda K: _shift_sum3x3(K) / 9))


def _shift_sum3x3(K: torch.Tensor) -> torch.Tensor:
    """(..., H, W, H, W) -> the sum over d in {-1, 0, 1}^2 of K(p + d, p' + d), zero outside the image."""
    H, W = K.shape[-4:-2]
    padded = F.pad(K, (1, 1, 1, 1, 1, 1, 1, 1))
    out = torch.zeros_like(K)
    for dh in range(3):
        for dw in range(3):
            out += padded[..., dh:dh + H, dw:dw + W, dh:dh + H, dw:dw + W]
    return out


def relu_step(S: torch.Tensor, T: torch.Tensor | None, qq: torch.Tensor, clip: bool = True):
    """The ReLU's infinite-width step, defined once (the plain walk and the block engine, eager or compiled,
    call it; the C kernel of kernels/infinite/native.py is tested against it). With q, q' the two inputs' own
    variances (qq = q q') and c their covariance S: s = sqrt(q q' - c^2), theta = arctan2(s, c),
    Sigma' = (s + (pi - theta) c) / (2 pi), Theta' = T (pi - theta) / (2 pi). `clip` first bounds c by
    sqrt(q q') (rounding can leave it just outside; the float64 block engine skips it, its c is exact).
    Returns (Sigma', Theta'), Theta' None when T is."""
    if clip:
        root = torch.sqrt(qq)
        S = torch.maximum(torch.minimum(S, root), -root)
    s = torch.sqrt(torch.clamp(qq - S * S, min=0))
    pi_minus = math.pi - torch.atan2(s, S)
    return (s + pi_minus * S) * (1 / (2 * math.pi)), None if T is None else T * pi_minus * (1 / (2 * math.pi))


class ReLU(Layer):
    type = "relu"
    channelwise = True
    on_blocks = True
    pair_step = staticmethod(relu_step)  # the step the block engines fuse with the affine map before it

    def forward(self, h):
        return torch.relu(h)

    def vjp(self, g, h):
        return g * (h > 0).to(g.dtype)

    folds_pooling = True

    def tape_save(self, h, next_layer):
        """The mask of the active units, pre-scaled by a pooling's factor when one follows (`unpool`)."""
        mask = (h > 0).to(h.dtype)
        if next_layer is not None and next_layer.pools:
            mask.mul_(next_layer.pool_factor(h.shape))
        return mask

    def tape_vjp(self, g, mask, out=None):
        return mul_into(g, mask, out)

    def infinite(self, kernel):
        """The arc-cosine step (`relu_step`), each input's own variances read off the kernel's diagonal."""
        S = kernel.nngp
        qa, qb = _pair_variances(_own_variances(S), S.dim())
        nngp, ntk = relu_step(S, kernel.ntk, qa * qb)
        return Kernel(nngp=nngp, ntk=ntk)

    @staticmethod
    def own_step(q, T):
        """An input with itself (angle exactly 0): both kernels halve."""
        return q / 2, None if T is None else T / 2


def _own_variances(S: torch.Tensor) -> torch.Tensor:
    """Each input's variance with itself at each position: (n,) for vectors, (n, H, W) for images."""
    d = torch.diagonal(S, dim1=0, dim2=1)  # (n,) or (H, W, H, W, n)
    if S.dim() == 2:
        return d
    return torch.diagonal(torch.diagonal(d, dim1=0, dim2=2), dim1=0, dim2=1)  # (W, W, n, H) -> (n, H, W)


def _pair_variances(q: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q (n, ...) broadcast as the first and as the second input of a pair kernel with `dims` axes."""
    if dims == 2:
        return q[:, None], q[None, :]
    return q[:, None, :, :, None, None], q[None, :, None, None, :, :]


class AvgPool(Layer):
    """2x2 average pooling, stride 2."""
    type = "avgpool"
    channelwise = True
    on_blocks = True
    pool_window = 2

    def forward(self, h):
        return F.avg_pool2d(h, 2, 2)

    pools = True

    def vjp(self, g, h):
        return 0.25 * g.repeat_interleave(2, 2).repeat_interleave(2, 3)

    def pool_factor(self, shape) -> float:
        return 0.25

    def tape_save(self, h, next_layer):
        return h.shape

    def tape_vjp(self, g, shape, out=None):
        n, c, H, W = shape
        return (g * 0.25)[:, :, :, None, :, None].expand(n, c, H // 2, 2, W // 2, 2).reshape(shape)

    def unpool(self, g, mask, shape, out=None):
        """This pooling's backward and a ReLU's before it: one multiply by the ReLU's mask (which holds the
        0.25). The rows are widened first: a broadcast over a last axis of 2 is slower."""
        n, c, H, W = shape
        g = g[..., None].expand(n, c, H // 2, W // 2, 2).reshape(n, c, H // 2, 1, W)
        return mul_into(g, mask.view(n, c, H // 2, 2, W), out).view(shape)

    def infinite(self, kernel):
        def pool(K):
            *lead, H, W, H2, W2 = K.shape
            return K.reshape(*lead, H // 2, 2, W // 2, 2, H2 // 2, 2, W2 // 2, 2).mean(dim=(-7, -5, -3, -1))
        return kernel.map(pool)


class GlobalAvgPool(Layer):
    """The mean over all pixels: images (N, C, H, W) -> vectors (N, C)."""
    type = "global_avg_pool"
    channelwise = True
    on_blocks = True

    def forward(self, h):
        return h.mean(dim=(2, 3))

    pools = True

    def vjp(self, g, h):
        return (g / (h.shape[2] * h.shape[3]))[:, :, None, None].expand(len(g), *h.shape[1:])

    def pool_factor(self, shape) -> float:
        return 1.0 / (shape[2] * shape[3])

    def tape_save(self, h, next_layer):
        return h.shape

    def tape_vjp(self, g, shape, out=None):
        return (g / (shape[2] * shape[3]))[:, :, None, None].expand(shape).contiguous()

    def unpool(self, g, mask, shape, out=None):
        return mul_into(g[:, :, None, None], mask, out)

    def infinite(self, kernel):
        return kernel.map(lambda K: K.mean(dim=(-4, -3, -2, -1)))


class Flatten(Layer):
    """Images to vectors in NHWC order, as neural-tangents flattens; vectors pass unchanged."""
    type = "flatten"
    on_blocks = True
    flattens = True

    def forward(self, h):
        return h.permute(0, 2, 3, 1).reshape(h.shape[0], -1) if h.dim() == 4 else h

    def vjp(self, g, h):
        if h.dim() != 4:
            return g
        n, c, H, W = h.shape
        return g.reshape(len(g), H, W, c).permute(0, 3, 1, 2)

    def tape_save(self, h, next_layer):
        return h.shape

    def tape_vjp(self, g, shape, out=None):
        if len(shape) != 4:
            return g
        n, c, H, W = shape
        return g.reshape(n, H, W, c).permute(0, 3, 1, 2).contiguous()

    def infinite(self, kernel):
        """A flattened image's covariance <x, x'> / (C H W) is the mean over pixels p of Sigma(p, p)."""
        if kernel.nngp.dim() == 2:
            return kernel
        return kernel.map(lambda K: torch.diagonal(torch.diagonal(K, dim1=2, dim2=4), dim1=2, dim2=3).mean((-2, -1)))


LAYER_TYPES = {cls.type: cls for cls in (Dense, Conv, ReLU, AvgPool, GlobalAvgPool, Flatten)}


def from_spec(spec: dict, parameterization: str = "ntk") -> Layer:
    """The layer a spec dict describes ({"type": ..., and its constructor's arguments})."""
    if spec.get("type") not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {spec.get('type')!r} in architecture description; "
                         f"expected one of {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[spec["type"]].from_spec(spec, parameterization)
