"""A user's own network, named by a factory: built reproducibly from its seed, trained through the same
Lightning path, rebuilt from its checkpoints, its eNTK through the general engine (against the Jacobian)."""
import textwrap

import numpy as np
import pytest
import torch

from ntkscaling import data, entk, io, models, training

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
    io.save_npz(tmp_path / "prepared.npz", **d)
    io.save_npy(tmp_path / "order.npy", data.nested_order(d["y_train"], 0))
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
