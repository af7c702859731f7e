"""A user's own network, named by a factory: built reproducibly from its seed, trained through the same
Lightning path, rebuilt from its checkpoints, its eNTK through the general engine (against the Jacobian)."""
import copy
import textwrap

import numpy as np
import pytest
import torch

from ntkscaling.pipeline import code_inputs
from ntkscaling import data, files, training
from ntkscaling.kernels.empirical import api as entk
from ntkscaling.kernels.infinite import api as infinite
from ntkscaling.nets import layers, models, resnet

USER_FILE = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bn, self.conv = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)

        def forward(self, h):
            return h + self.conv(torch.nn.functional.gelu(self.bn(h)))


    def small_resnet(in_shape, out_dim, width, blocks=1):
        c_in = in_shape[0]
        return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), *[Block(width) for _ in range(blocks)],
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, out_dim))


    def not_a_module(in_shape, out_dim, width):
        return 3


    def wrong_outputs(in_shape, out_dim, width):
        return nn.Flatten()


    def capped(in_shape, out_dim, width):
        if width > 8:
            raise ValueError(f"width {width}: this network stops at 8 channels")
        return small_resnet(in_shape, out_dim, width)


    def grey_only(in_shape, out_dim, width):
        if in_shape[0] != 1:
            raise ValueError(f"grey images only, got {in_shape[0]} channels")
        return small_resnet(in_shape, out_dim, width)
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "usernet.py"
    path.write_text(USER_FILE)
    return path


def test_factory_from_a_file_or_a_module_is_seeded_by_its_seed_alone(user_file, monkeypatch):
    by_file = models.network_from_factory(f"{user_file}:small_resnet", (1, 8, 8), 3, 4, seed=2, blocks=2)
    monkeypatch.syspath_prepend(str(user_file.parent))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    by_module = models.network_from_factory("usernet:small_resnet", (1, 8, 8), 3, 4, seed=2, blocks=2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left alone
    for a, b in zip(by_file.state_dict().values(), by_module.state_dict().values()):
        assert torch.equal(a, b)
    other = models.network_from_factory("usernet:small_resnet", (1, 8, 8), 3, 4, seed=3, blocks=2)
    assert not torch.equal(other[0].weight, by_file[0].weight)
    assert len([m for m in by_file if type(m).__name__ == "Block"]) == 2


@pytest.mark.parametrize("factory,message", [
    ("small_resnet", "expected 'package.module:function'"),
    ("missing.py:small_resnet", "is not a file"),
    ("no_such_package_xyz:f", "cannot import no_such_package_xyz"),
    ("{file}:absent", "has no function 'absent'"),
    ("{file}:not_a_module", "returned int; expected a torch nn.Module"),
    ("{file}:wrong_outputs", r"maps inputs \(2, \*\(1, 8, 8\)\) to \(2, 64\); expected \(2, 3\)"),
])
def test_bad_factory_is_named(user_file, factory, message):
    factory = factory.format(file=user_file)
    with pytest.raises(ValueError, match=f"model.factory=.*{message}"):
        models.network_from_factory(factory, (1, 8, 8), 3, 4, seed=0)


def test_user_network_trains_and_is_rebuilt_from_its_checkpoints(user_file, tmp_path):
    d = data.prepare("digits", test_size=60, val_size=40)
    files.save_npz(tmp_path / "prepared.npz", **d)
    files.save_npy(tmp_path / "order.npy", data.nested_order(d["y_train"], 0))
    network = training.NetworkSettings("small_resnet", 4, factory=f"{user_file}:small_resnet",
                                       factory_kwargs={"blocks": 1})
    train = training.TrainSettings(lr=0.05, batch_size=16, steps=6, eval_points=2)
    rows, records, saved = training.train_network(tmp_path / "prepared.npz", tmp_path / "order.npy", 32, 1,
                                                  tmp_path / "run", network, train, progress=False)
    assert sorted(saved) == [0, 6] and {r["arch"] for r in rows} == {"small_resnet"}
    x = torch.from_numpy(d["x_test"][:6])
    first, last = models.load_network(saved[0]), models.load_network(saved[6])
    assert not torch.equal(first[0].weight, last[0].weight)  # trained
    # the checkpoint rebuilds the trained module: its test predictions are the run's own (centred: f - f0)
    with torch.no_grad():
        pred = last.eval()(torch.from_numpy(d["x_test"])) - first.eval()(torch.from_numpy(d["x_test"]))
    np.testing.assert_allclose(pred.numpy(), records["network"]["pred"], rtol=1e-5, atol=1e-6)
    assert entk.engine(last) == "general"
    K = entk.empirical_ntk_from_checkpoint(saved[6], x, dtype=torch.float64, device="cpu")
    ref = entk.empirical_ntk(last, x, dtype=torch.float64, implementation="jacobian")
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-12)
    # the subtracted initial function stayed fixed through training: f0's BatchNorm statistics are still
    # those of the initial network (f0 runs in eval mode; in train mode its running averages would move)
    end, start = models.load_checkpoint(saved[6])["state_dict"], models.load_checkpoint(saved[0])["state_dict"]
    stats = [k for k in end if k.startswith("net0.") and "running" in k]
    assert stats and all(torch.equal(end[k], start["net." + k[len("net0."):]]) for k in stats)
    assert any(not torch.equal(end["net." + k[len("net0."):]], end[k]) for k in stats)  # the network's moved


def test_builtin_resnet_is_the_cifar_resnet_seeded_and_its_entk_is_the_jacobians():
    settings = dict(arch="resnet", width=4, depth=2)
    net = models.build_network(settings, (3, 8, 8), 5, seed=1)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    shortcuts = [m for m in convs if m.kernel_size == (1, 1)]
    assert len(convs) - len(shortcuts) + 1 == 6 * 2 + 2  # ResNet-14: 6 * depth + 2 layers with weights
    assert len(shortcuts) == 2 and [m.out_channels for m in shortcuts] == [8, 16]  # stages 2 and 3: 2x, 4x
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == len(convs)
    again = models.build_network(settings, (3, 8, 8), 5, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(models.build_network(settings, (3, 8, 8), 5, seed=2)[0].weight, net[0].weight)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert entk.engine(net) == "general"
    for kind in ("mean", "full"):
        K = entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64)
        ref = entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64, implementation="jacobian")
        np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="no infinite-width kernel: its layer 0 \\(Conv2d\\)"):
        models.infinite_layers(net)


def test_infinite_kernel_of_a_factory_made_of_library_layers(tmp_path):
    """A sequence of ntkscaling layers from a user's file has the infinite kernel of the same layer walk;
    any other layer, or a composition other than a sequence, is named."""
    (tmp_path / "layered.py").write_text(textwrap.dedent('''
        from torch import nn
        from ntkscaling import layers, models


        def as_sequential(in_shape, out_dim, width):
            return nn.Sequential(layers.Flatten(), layers.Dense(64, width, 1.5, 0.1), layers.ReLU(),
                                 layers.Dense(width, out_dim, 1.5, 0.1))


        def as_network(in_shape, out_dim, width):
            return models.build("mlp", width, in_shape, out_dim, depth=1, W_std=1.5, b_std=0.1)


        class Skip(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.inner = layers.Dense(64, 64, 1.5, 0.1)
                self.flat, self.out = layers.Flatten(), layers.Dense(64, 3, 1.5, 0.1)

            def forward(self, x):
                h = self.flat(x)
                return self.out(h + self.inner(h))


        def with_skip(in_shape, out_dim, width):
            return Skip(width)
    '''))
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = infinite.infinite_kernels("mlp", (1, 8, 8), x, depth=1, W_std=1.5, b_std=0.1)
    for name in ("as_sequential", "as_network"):
        net = models.network_from_factory(f"{tmp_path / 'layered.py'}:{name}", (1, 8, 8), 3, 16, seed=0)
        kernel = infinite.infinite_kernels_of(models.infinite_layers(net), x)
        np.testing.assert_allclose(kernel.ntk, ref.ntk, rtol=1e-12)
        np.testing.assert_allclose(kernel.nngp, ref.nngp, rtol=1e-12)
    skip = models.network_from_factory(f"{tmp_path / 'layered.py'}:with_skip", (1, 8, 8), 3, 16, seed=0)
    with pytest.raises(ValueError, match="it is a Skip, not a sequence"):
        models.infinite_layers(skip)


def _config(**model):
    cfg = {"dataset": {"name": "digits", "test_size": 100, "val_size": 60}, "sample_sizes": [16, 32],
           "model": {"widths": [4], **model}}
    return cfg


@pytest.mark.parametrize("model,infinite,message", [
    ({"arch": "mine"}, False, r"'model.arch': got 'mine'; expected one of \['mlp', .*'resnet'\], or set model.factory"),
    ({"arch": "mlp", "factory": "{file}:small_resnet"}, False, "'mlp' names a built-in network"),
    ({"arch": "mlp", "factory_kwargs": {"blocks": 2}}, False, "'model.factory_kwargs'.*without model.factory"),
    ({"arch": "resnet"}, True, "'kernel.infinite': true, but model.arch 'resnet' is made of torch layers"),
    ({"arch": "mine", "factory": "nowhere.py:f"}, False, r"'model.factory': model.factory='nowhere.py:f': "
                                                          r"nowhere.py is not a file"),
    ({"arch": "mine", "factory": "{file}:small_resnet", "factory_kwargs": {"blocs": 2}}, False,
     r"building '.*usernet.py:small_resnet' with width 4, in_shape \(1, 8, 8\), out_dim 10 and factory_kwargs "
     r"\{'blocs': 2\} failed: TypeError"),
    ({"arch": "mine", "factory": "{file}:capped", "widths": [4, 16]}, False,
     r"building '.*usernet.py:capped' with width 16, .* failed: width 16: this network stops at 8 channels"),
    ({"arch": "mine", "factory": "{file}:wrong_outputs"}, False, r"maps inputs .* expected \(2, 10\)"),
    ({"arch": "mine", "factory": "{file}:small_resnet"}, True, "'kernel.infinite': true, but "
     r"model.factory='.*usernet.py:small_resnet' has no infinite-width kernel: its layer 0 \(Conv2d\).*\(at width 4\)"),
])
def test_config_checks_the_network_before_any_job(user_file, model, infinite, message):
    from ntkscaling.pipeline import config
    if "factory" in model:
        model = {**model, "factory": model["factory"].format(file=user_file)}
    cfg = _config(**model)
    cfg["kernel"] = {"infinite": infinite}
    with pytest.raises(config.ConfigError, match=message):
        config.validate(cfg)


def test_a_factory_is_built_on_an_image_folders_shape_before_any_job(user_file, tmp_path):
    """An image folder's input shape comes from its first image's header: a network that cannot take it
    is named at start-up, not in the first training job."""
    from conftest import write_imagefolder
    from ntkscaling.pipeline import config
    write_imagefolder(tmp_path / "images", {"train": 4, "test": 2})
    cfg = {"dataset": {"name": "imagefolder", "root": str(tmp_path / "images"), "test_size": 2, "val_size": 2},
           "sample_sizes": [2, 4], "after_kernel": {"ks": [2]}, "kernel": {"infinite": False},
           "model": {"widths": [4], "arch": "mine", "factory": f"{user_file}:grey_only"}}
    with pytest.raises(config.ConfigError, match=r"in_shape \(3, 8, 8\), out_dim 2 .* failed: grey images only, "
                                                 r"got 3 channels"):
        config.validate(cfg)
    cfg["model"]["factory"] = f"{user_file}:small_resnet"
    config.validate(cfg)


@pytest.mark.parametrize("source,message", [
    ("import torch\n\ndef net(in_shape, out_dim, width):\n    return torch.nn.Linear(3, out_dim\n",
     r".*broken.py does not load: SyntaxError: .* \(.*broken.py, line 4\)"),
    ("import torch\nimport no_such_package_here\n",
     r".*broken.py does not load: ModuleNotFoundError: No module named 'no_such_package_here' \(.*broken.py, line 2\)"),
    ("import torch\n\nWIDTHS = {}\nDEFAULT = WIDTHS['base']\n",
     r".*broken.py does not load: KeyError: 'base' \(.*broken.py, line 4\)"),
])
def test_a_factory_file_that_does_not_load_is_refused_naming_file_and_line(tmp_path, source, message):
    from ntkscaling.pipeline import config
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(config.ConfigError, match=r"'model.factory': model.factory='.*broken.py:net': " + message):
        config.validate(_config(arch="mine", factory=f"{path}:net"))


def test_a_factory_module_that_does_not_import_is_refused(tmp_path, monkeypatch):
    from ntkscaling.pipeline import config
    (tmp_path / "brokenpkg_ntk.py").write_text("x = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(config.ConfigError, match=r"cannot import brokenpkg_ntk: ZeroDivisionError: division by "
                                                 r"zero \(.*brokenpkg_ntk.py, line 1\)"):
        config.validate(_config(arch="mine", factory="brokenpkg_ntk:net"))


def test_config_accepts_a_factory_under_its_own_label(user_file):
    from ntkscaling.pipeline import config
    cfg = config.validate(dict(_config(arch="small-resnet_2", factory=f"{user_file}:small_resnet",
                                       factory_kwargs={"blocks": 2}), kernel={"infinite": False}))
    assert cfg["model"]["factory_kwargs"] == {"blocks": 2}
    assert config.validate(dict(_config(arch="resnet"), kernel={"infinite": False}))["model"]["factory"] is None


def test_factory_files_are_the_code_inputs_of_the_network_jobs(user_file):
    assert code_inputs.factory_files(None) == []
    assert code_inputs.factory_files(f"{user_file}:small_resnet") == [str(user_file)]
    assert code_inputs.factory_files("ntkscaling.resnet:resnet") == [resnet.__file__]
    assert code_inputs.factory_files("no_such_package_xyz.mod:f") == []


def _library_sequence(c_in=2, width=5, out=3, seed=4):
    """A network composed by hand (as a factory would) of the library's own layers, in an nn.Sequential."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(layers.Conv(c_in, width, 1.5, 0.1), layers.ReLU(), layers.AvgPool(),
                              layers.Conv(width, width, 1.4, 0.0), layers.ReLU(), layers.GlobalAvgPool(),
                              layers.Dense(width, out, 1.2, 0.2))
    for p in net.parameters():
        torch.nn.init.normal_(p)
    return net


@pytest.mark.parametrize("kind", ["mean", "sum", "full"])
def test_a_sequence_of_library_layers_from_anywhere_goes_through_the_layerwise_engine(kind):
    net = _library_sequence()
    x1, x2 = torch.randn(7, 2, 4, 4, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64)
    assert entk.engine(net) == "layerwise"
    for second in (None, x2):
        general = entk.empirical_ntk(net, x1, second, kind=kind, dtype=torch.float64, implementation="general")
        for budget in (None, 1e-5):  # held, and out of core
            K = entk.empirical_ntk(net, x1, second, kind=kind, dtype=torch.float64, max_memory_gb=budget)
            np.testing.assert_allclose(K, general, rtol=1e-10, atol=1e-12)
    # what the layerwise engine cannot run stays with the general one
    torch_relu = torch.nn.Sequential(*list(_library_sequence())[:1], torch.nn.ReLU(), *list(_library_sequence())[2:])
    frozen = _library_sequence()
    frozen[0].bias.requires_grad_(False)

    class NoBackward(layers.Layer):
        def forward(self, h):
            return h
    no_rule = torch.nn.Sequential(*list(_library_sequence()), NoBackward())
    conv_last = torch.nn.Sequential(layers.Conv(2, 3, 1.0, 0.0))
    for other in (torch_relu, frozen, no_rule, conv_last):
        assert entk.engine(other) == "general"
        with pytest.raises(ValueError, match="needs a sequence of ntkscaling's layers"):
            entk.engine(other, "layerwise")


def test_network_outputs_are_the_function_of_the_network_in_eval_mode(tmp_path):
    # the f0 of the linearized predictor: BatchNorm with its running statistics, whatever the batch (in train
    # mode the output of a row would depend on the rows batched with it); the network is left as it was
    net = models.build_network({"arch": "resnet", "width": 4, "depth": 1}, (3, 8, 8), 5, seed=1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(9, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = copy.deepcopy(net).double().eval()(x.double()).numpy()
    for batch in (9, 4, 1):
        np.testing.assert_allclose(models.network_outputs(net, x, batch_size=batch), want, rtol=1e-12, atol=1e-12)
    assert net.training and next(net.parameters()).dtype == torch.float32
