"""Networks against neural-tangents' reference outputs, and the parameterizations' init statistics."""
import json

import numpy as np
import pytest
import torch

from ntkscaling.nets import models

from conftest import reference_network


@pytest.mark.parametrize("name", ["mlp_L2_w64_empirical", "myrtle5_w8_empirical"])
def test_outputs_match_neural_tangents(reference_dir, name):
    folder = reference_dir / name
    net, x, _ = reference_network(folder)
    out = net(x).detach().numpy()
    ref = np.load(folder / "fx.npy")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


def test_layer_specs_match_reference_layer_list(reference_dir):
    meta = json.loads((reference_dir / "myrtle5_w8_empirical" / "meta.json").read_text())
    specs = models.layer_specs("myrtle5", 8, (1, 8, 8), 10, W_std=meta["W_std"], b_std=meta["b_std"])
    assert [s["type"] for s in specs] == [s["kind"] for s in meta["layer_spec"]]  # the reference names it kind


def test_mlp_flattens_images_in_nhwc_order():
    net = models.build("mlp", 4, (3, 2, 2), 2, depth=1, seed=0)
    x = torch.randn(5, 3, 2, 2)
    first = net.param_layers()[0]
    h = x.permute(0, 2, 3, 1).reshape(5, -1)
    expected = h @ (first.weight * first.W_scale).T + first.bias * first.b_scale
    np.testing.assert_allclose(net[1](net[0](x)).detach(), expected.detach(), rtol=1e-6)


def test_parameterizations_give_same_function_distribution():
    # NTK: raw N(0,1) weights scaled in the forward pass; standard: scaled weights. Same pre-activation stats.
    torch.manual_seed(0)
    x = torch.randn(4000, 100)
    for param in ("ntk", "standard"):
        net = models.build("mlp", 2000, (100,), 1, depth=1, parameterization=param, W_std=2 ** 0.5, b_std=0.0)
        first = net.param_layers()[0]
        pre = first(x[:1])
        # each pre-activation ~ N(0, W_std^2 |x|^2 / d)
        expected = 2.0 * (x[:1] ** 2).sum() / 100
        assert abs(pre.var().item() / expected.item() - 1) < 0.1, param
    ntk = models.build("mlp", 64, (10,), 3, depth=1, parameterization="ntk")
    assert abs(ntk.param_layers()[0].weight.std().item() - 1) < 0.1


def test_same_seed_same_init_and_different_seed_differs():
    a = models.build("myrtle5", 4, (1, 8, 8), 10, seed=3)
    b = models.build("myrtle5", 4, (1, 8, 8), 10, seed=3)
    c = models.build("myrtle5", 4, (1, 8, 8), 10, seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("arch,blocks", [("myrtle5", 4), ("myrtle7", 6), ("myrtle10", 9)])
def test_myrtle_depths(arch, blocks):
    net = models.build(arch, 3, (3, 8, 8), 10)
    assert len([s for s in net.specs if s["type"] == "conv"]) == blocks
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="arch='resnet'"):
        models.build("resnet", 4, (3, 8, 8), 10)
    with pytest.raises(ValueError, match="depth"):
        models.build("mlp", 4, (3,), 10)
    with pytest.raises(ValueError, match="multiples of 4"):
        models.build("myrtle5", 4, (3, 6, 6), 10)
    with pytest.raises(ValueError, match="parameterization"):
        models.build("mlp", 4, (3,), 10, depth=1, parameterization="mup")
