"""Each layer type of layers.py against independent references: its backward rule against autograd, its
eNTK features against autograd's per-sample parameter gradients, its infinite-width step (through the plain
walk) against neural-tangents or a closed form; and a layer type added from outside the library works in
every walk without editing any other file."""
import json

import numpy as np
import pytest
import torch

from ntkscaling.kernels.empirical import api as entk
from ntkscaling.kernels.infinite import api as infinite
from ntkscaling.nets import layers, models

from conftest import reference_network

GEN = torch.Generator().manual_seed(0)


def _rand(*shape):
    return torch.randn(shape, generator=GEN, dtype=torch.float64)


def _param_layer(cls, *args, b_std=0.3):
    layer = cls(*args, W_std=1.3, b_std=b_std).double()
    with torch.no_grad():
        layer.weight.copy_(_rand(*layer.weight.shape))
        layer.bias.copy_(_rand(*layer.bias.shape))
    return layer


# one case per layer type (the coverage test below fails when a type has none): (layer, input shape)
CASES = {
    "dense": (lambda: _param_layer(layers.Dense, 5, 3), (5,)),
    "conv": (lambda: _param_layer(layers.Conv, 2, 3), (2, 4, 6)),
    "relu": (layers.ReLU, (3, 4, 4)),
    "avgpool": (layers.AvgPool, (3, 4, 6)),
    "global_avg_pool": (layers.GlobalAvgPool, (3, 4, 6)),
    "flatten": (layers.Flatten, (3, 2, 4)),
}
# where each kind's infinite step meets neural-tangents: (reference folder, inputs, arch, depth)
NT_CASES = {"dense": ("mlp_L2_infinite", "x_mlp.npy", "mlp", 2), "relu": ("mlp_L2_infinite", "x_mlp.npy", "mlp", 2)}
NT_CASES |= {k: ("myrtle5_infinite", "x_img8.npy", "myrtle5", None) for k in ("conv", "avgpool", "global_avg_pool")}


def test_every_layer_type_has_its_cases():
    assert set(CASES) == set(layers.LAYER_TYPES)
    assert set(NT_CASES) | {"flatten"} == set(layers.LAYER_TYPES)  # flatten: closed form below


@pytest.mark.parametrize("kind", sorted(CASES))
def test_forward_and_backward_rule_match_autograd(kind):
    make, shape = CASES[kind]
    layer = make()
    h = _rand(4, *shape).requires_grad_()
    out = layer(h)
    g = _rand(*out.shape)
    ref, = torch.autograd.grad(out, h, g)
    with torch.no_grad():
        np.testing.assert_allclose(layer.vjp(g, h.detach()), ref, rtol=1e-12, atol=1e-12)
    assert layers.from_spec({"type": kind, **_constructor_args(layer)}).type == kind


def _constructor_args(layer):
    if isinstance(layer, layers.Dense):
        return {"fan_in": layer.fan_in, "fan_out": layer.fan_out, "W_std": layer.W_std, "b_std": layer.b_std}
    if isinstance(layer, layers.Conv):
        return {"c_in": layer.c_in, "c_out": layer.c_out, "W_std": layer.W_std, "b_std": layer.b_std}
    return {}


@pytest.mark.parametrize("kind,b_std", [("dense", 0.3), ("conv", 0.3), ("conv", 0.0)])
def test_entk_features_and_gram_match_per_sample_parameter_gradients(kind, b_std):
    # a layer followed by a fixed random map to 3 logits: the layer's eNTK term is the Gram of the
    # per-sample gradients of each logit w.r.t. the layer's raw parameters (autograd, sample by sample)
    make, shape = CASES[kind]
    layer = _param_layer(type(make()), *((5, 3) if kind == "dense" else (2, 3)), b_std=b_std)
    x = _rand(4, *shape)
    out_shape = layer(x[:1]).shape[1:]
    readout = _rand(3, int(np.prod(out_shape)))
    grads, outputs_grad = [], []
    for xi in x:
        z = layer(xi[None])
        row = []
        for c in range(3):
            gw, gb = torch.autograd.grad((z.reshape(-1) * readout[c]).sum(), (layer.weight, layer.bias),
                                         retain_graph=True)
            row.append(torch.cat([gw.reshape(-1), gb.reshape(-1)]))
        grads.append(torch.stack(row))
        outputs_grad.append(readout.reshape(3, *out_shape))
    J = torch.stack(grads)                                  # (n, C, P)
    G = torch.stack(outputs_grad)                           # (n, C, *out)
    with torch.no_grad():
        f = layer.entk_features(x, G)
        for kind_ in ("full", "mean"):
            ours = layer.entk_gram(f, f, kind_)
            ref = torch.einsum("acp,bdp->abcd", J, J) if kind_ == "full" else torch.einsum("acp,bcp->ab", J, J)
            np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=1e-11)
    # the memory estimate is the features' true size
    assert {k: tuple(v.shape[1:]) for k, v in f.items()} == layer.feature_shapes(3)


def _nt_reference(reference_dir, folder, x_name):
    meta = json.loads((reference_dir / folder / "meta.json").read_text())
    x = np.load(reference_dir / x_name)
    x = torch.from_numpy(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x)
    return x, meta, np.load(reference_dir / folder / "ntk.npy"), np.load(reference_dir / folder / "nngp.npy")


@pytest.mark.parametrize("kind", sorted(NT_CASES))
def test_infinite_step_matches_neural_tangents_through_the_plain_walk(reference_dir, kind):
    folder, x_name, arch, depth = NT_CASES[kind]
    x, meta, ref_ntk, ref_nngp = _nt_reference(reference_dir, folder, x_name)
    specs = models.layer_specs(arch, 1, x.shape[1:], 1, depth=depth, W_std=meta["W_std"], b_std=meta["b_std"])
    assert kind in [s["type"] for s in specs]
    kernel = infinite.infinite_kernels_of([layers.from_spec(s) for s in specs], x, implementation="plain")
    off = ~np.eye(len(x), dtype=bool)
    assert np.abs(kernel.nngp.numpy() - ref_nngp).max() / np.abs(ref_nngp).max() < 1e-10
    # off the diagonal: the reference's own diagonal carries ~1e-8 of rounding (see test_infinite.py)
    assert np.abs(kernel.ntk.numpy() - ref_ntk)[off].max() / np.abs(ref_ntk).max() < 1e-10


def test_flatten_infinite_step_is_the_inner_product_of_flattened_images():
    x = _rand(5, 3, 2, 4)
    flat = x.reshape(5, -1)
    kernel = layers.Flatten().infinite(layers.input_kernel(x))
    np.testing.assert_allclose(kernel.nngp, flat @ flat.T / flat.shape[1], rtol=1e-13)
    assert kernel.ntk is None


@pytest.mark.parametrize("arch,shape,depth", [("mlp", (12,), 2), ("mlp", (2, 4, 4), 1), ("myrtle5", (2, 8, 8), None),
                                              ("myrtle7", (1, 8, 8), None)])
def test_fast_engines_give_the_plain_walks_numbers(arch, shape, depth):
    x1, x2 = _rand(6, *shape), _rand(4, *shape)
    for b in (None, x2):
        fast = infinite.infinite_kernels(arch, shape, x1, b, depth=depth, b_std=0.2, batch_size=4)
        plain = infinite.infinite_kernels(arch, shape, x1, b, depth=depth, b_std=0.2, implementation="plain")
        for f, p in ((fast.ntk, plain.ntk), (fast.nngp, plain.nngp)):
            np.testing.assert_allclose(f, p, rtol=1e-12, atol=1e-14)
    net = models.build(arch, 5, shape, 3, depth=depth, b_std=0.2, seed=1).double()
    for kind in ("mean", "full"):
        fast = entk.empirical_ntk(net, x1, x2, kind=kind, dtype=torch.float64, implementation="layerwise")
        plain = entk.empirical_ntk(net, x1, x2, kind=kind, dtype=torch.float64, implementation="plain")
        np.testing.assert_allclose(fast, plain, rtol=1e-12, atol=1e-12)


def test_plain_entk_matches_neural_tangents(reference_dir):
    for name in ("mlp_L2_w64_empirical", "myrtle5_w8_empirical"):
        net, x, _ = reference_network(reference_dir / name)
        K = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, implementation="plain")
        ref = np.load(reference_dir / name / "entk_full.npy")
        assert np.abs(K.numpy() - ref).max() / np.abs(ref).max() < 1e-9


class Scale(layers.Layer):
    """A layer type defined outside the library: multiply by a constant."""
    type = "scale"
    channelwise = True

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, h):
        return h * self.factor

    def vjp(self, g, h):
        return g * self.factor

    def infinite(self, kernel):
        return kernel.map(lambda K: K * self.factor ** 2)


def test_a_layer_added_from_outside_works_in_every_walk(monkeypatch):
    monkeypatch.setitem(layers.LAYER_TYPES, "scale", Scale)
    base = models.layer_specs("myrtle5", 4, (1, 8, 8), 3, b_std=0.1)
    specs = base[:-2] + [{"type": "scale", "factor": 1.7}] + base[-2:]   # ... relu, scale, gap, readout
    net = models.init_params(models.Network(specs, "ntk"), seed=2).double()
    x = _rand(5, 1, 8, 8)
    ref = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, implementation="jacobian")
    for impl in ("plain", "layerwise"):
        K = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, implementation=impl)
        np.testing.assert_allclose(K, ref, rtol=1e-11, atol=1e-12)
    # infinite width: 'auto' walks the plain path (the block engine has no rule for it) and agrees with the
    # closed form: scaling the last hidden layer's kernels by a^2 before the readout Dense (W_std^2 w2, b2)
    kernel = infinite.infinite_kernels_of(net, x)
    before = infinite.infinite_kernels_of([layers.from_spec(s) for s in base[:-1]], x)
    w2, b2 = 2.0, 0.1 ** 2
    np.testing.assert_allclose(kernel.nngp, w2 * 1.7 ** 2 * before.nngp + b2, rtol=1e-12)
    np.testing.assert_allclose(kernel.ntk, w2 * 1.7 ** 2 * before.ntk + kernel.nngp, rtol=1e-12)
    with pytest.raises(ValueError, match="no rule for layer types \\['scale'\\]"):
        infinite.infinite_kernels_of(net, x, implementation="blocks")
