"""eNTK engine: every implementation against the plain Jacobian contraction and neural-tangents' values."""
import numpy as np
import pytest
import torch

from ntkscaling import entk, entk_fast, io, models, training

from conftest import reference_network


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("name", ["mlp_L2_w64_empirical", "myrtle5_w8_empirical"])
@pytest.mark.parametrize("impl", ["jacobian", "layerwise"])
def test_matches_neural_tangents_float64(reference_dir, name, impl):
    folder = reference_dir / name
    net, x, _ = reference_network(folder)
    K = entk.empirical_ntk(net, x, kind="mean", dtype=torch.float64, implementation=impl)
    Kf = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, implementation=impl)
    assert _rel(K, np.load(folder / "entk_trace.npy")) < 1e-9
    assert _rel(Kf, np.load(folder / "entk_full.npy")) < 1e-9


@pytest.mark.parametrize("arch,in_shape,depth,b_std,width", [
    ("mlp", (12,), 3, 0.3, 6), ("mlp", (2, 4, 4), 1, 0.0, 6), ("myrtle5", (3, 8, 8), None, 0.2, 6),
    ("myrtle7", (1, 8, 8), None, 0.0, 6),
    ("myrtle5", (1, 8, 8), None, 0.1, 12)])  # a one-channel first conv: 9-column unfold
@pytest.mark.parametrize("kind", ["mean", "sum", "full"])
def test_layerwise_matches_jacobian_float32(arch, in_shape, depth, b_std, width, kind):
    net = models.build(arch, width, in_shape, 4, depth=depth, b_std=b_std, seed=1)
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn((7,) + in_shape, generator=g), torch.randn((5,) + in_shape, generator=g)
    for a, b in ((x1, None), (x1, x2)):
        ref = entk.empirical_ntk(net, a, b, kind=kind, implementation="jacobian")
        fast = entk.empirical_ntk(net, a, b, kind=kind, implementation="layerwise")
        assert _rel(fast, ref) < 1e-5


def test_blocks_give_the_same_kernel(monkeypatch):
    net = models.build("myrtle5", 4, (1, 8, 8), 3, seed=2)
    x = torch.randn(11, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    whole = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, implementation="jacobian")
    # features held for all rows but computed in chunks, Gram in blocks
    monkeypatch.setattr(entk_fast, "FEATURE_CHUNK", 4)
    monkeypatch.setattr(entk_fast, "CONTRACT_BLOCK", 3)
    for kind in ("full", "mean"):
        ref = whole if kind == "full" else torch.diagonal(whole, dim1=2, dim2=3).mean(-1)
        np.testing.assert_allclose(entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64), ref,
                                   rtol=1e-10, atol=1e-12)
    # out of core: a tiny budget (one row held, one streamed), and one that holds panels of a few rows
    # and streams blocks of columns (the panel path, symmetric and not)
    tiny_budget = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, max_memory_gb=1e-6)
    np.testing.assert_allclose(tiny_budget, whole, rtol=1e-12, atol=1e-12)
    retained, transient = entk_fast.bytes_per_sample(net.double(), (1, 8, 8), 3, 8)
    net.float()
    some = (6 * retained + 4 * transient + 11 * 11 * 9 * 8) / 1e9  # chunk 4, panels of 4 rows, stream 2
    monkeypatch.setattr(entk_fast, "CONTRACT_BLOCK", 2)
    np.testing.assert_allclose(entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, max_memory_gb=some),
                               whole, rtol=1e-12, atol=1e-12)
    x2 = torch.randn(5, 1, 8, 8)
    cross = entk.empirical_ntk(net, x, x2, dtype=torch.float64)
    for budget in (1e-6, some):
        np.testing.assert_allclose(entk.empirical_ntk(net, x, x2, dtype=torch.float64, max_memory_gb=budget),
                                   cross, rtol=1e-12, atol=1e-12)


def test_symmetric_psd_and_reductions_of_full():
    net = models.build("mlp", 16, (5,), 3, depth=2, b_std=0.1, seed=0)
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3))
    full = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64)
    mean = entk.empirical_ntk(net, x, kind="mean", dtype=torch.float64)
    summ = entk.empirical_ntk(net, x, kind="sum", dtype=torch.float64)
    np.testing.assert_allclose(mean, torch.diagonal(full, dim1=2, dim2=3).mean(-1), rtol=1e-12)
    np.testing.assert_allclose(summ, full.sum(dim=(2, 3)), rtol=1e-12)
    np.testing.assert_allclose(mean, mean.T, rtol=1e-13)
    assert torch.linalg.eigvalsh(mean).min() > -1e-10 * mean.diagonal().max()
    flat = full.permute(0, 2, 1, 3).reshape(27, 27)
    assert torch.linalg.eigvalsh(flat).min() > -1e-10 * flat.diagonal().max()


def test_does_not_change_callers_model_and_rejects_bad_arguments():
    net = models.build("mlp", 8, (3,), 2, depth=1)
    entk.empirical_ntk(net, torch.randn(4, 3), dtype=torch.float64)
    assert next(net.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="kind='trace'"):
        entk.empirical_ntk(net, torch.randn(4, 3), kind="trace")
    with pytest.raises(ValueError, match="implementation='magic'"):
        entk.empirical_ntk(net, torch.randn(4, 3), implementation="magic")


def test_from_checkpoint(tmp_path):
    module = training.NetworkModule(training.NetworkSettings("mlp", 8, depth=1), in_shape=(3,), out_dim=2, init_seed=5)
    import pytorch_lightning as pl
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    x = torch.randn(4, 3)
    np.testing.assert_allclose(entk.empirical_ntk_from_checkpoint(tmp_path / "c.ckpt", x, device="cpu"),
                               entk.empirical_ntk(module.net, x), rtol=1e-6)


def test_job_memory_budget_follows_the_memory_request():
    assert entk.memory_budget_gb(8000, "cpu") == pytest.approx(5.4)
    assert entk.memory_budget_gb(32000, "cpu") == pytest.approx(24.6)
    assert entk.memory_budget_gb(1000, "cpu") == 1.0  # never below 1 GB
    assert entk.memory_budget_gb(None, "cpu") == 4.0  # no request known: the library default


def test_readout_diagonal_layer_is_found_only_where_it_is_exact():
    myrtle = models.build("myrtle5", 4, (1, 8, 8), 3)
    mlp = models.build("mlp", 4, (5,), 3, depth=2)
    assert entk_fast.readout_diagonal(myrtle, "mean") == 3      # conv4 -> relu -> global pool -> readout
    assert entk_fast.readout_diagonal(mlp, "mean") == 1         # last hidden dense -> relu -> readout
    assert entk_fast.readout_diagonal(myrtle, "full") is None   # logit pairs need every logit's features
    assert entk_fast.readout_diagonal(mlp, "sum") is None
    # a module that may mix channels between the last hidden layer and the readout rules it out
    mixed = models.Network(myrtle.specs[:-2] + [{"kind": "flatten"}] + myrtle.specs[-1:], "ntk")
    assert entk_fast.readout_diagonal(mixed, "mean") is None
    mixed = models.Network(mlp.specs, "ntk")
    mixed[-2] = torch.nn.Identity()
    assert entk_fast.readout_diagonal(mixed, "mean") is None    # an unknown module is not trusted


def test_unfold_matches_torch_unfold():
    h = torch.randn(3, 5, 6, 4, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.unfold(h, 3, padding=1)
    assert torch.equal(entk_fast.unfold3x3(h), ref)
    buf = torch.full((3 * 5 * 9 * 24 + 7,), float("nan"))
    assert torch.equal(entk_fast.unfold3x3(h, buf), ref)
    assert torch.equal(entk_fast.unfold3x3(h[:2], buf), ref[:2])  # a smaller last chunk reuses the buffer


def test_progress_reports_features_and_gram_blocks(monkeypatch):
    net = models.build("myrtle5", 4, (1, 8, 8), 3, seed=2)
    x = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(entk_fast, "FEATURE_CHUNK", 4)
    monkeypatch.setattr(entk_fast, "CONTRACT_BLOCK", 4)
    msgs = []
    entk.empirical_ntk(net, x, progress=msgs.append)  # fast: only the end of each phase
    assert [m.split()[:3] for m in msgs] == [["eNTK", "feature", "rows"], ["eNTK", "Gram", "blocks"]]
    assert msgs[0].split()[3] == "10/10" and msgs[1].split()[3] == "6/6"  # 3 x 3 blocks, upper triangle
    monkeypatch.setattr(io, "PROGRESS_SECONDS", 0.0)
    msgs.clear()
    entk.empirical_ntk(net, x, x[:3], progress=msgs.append)
    assert [m.split()[3] for m in msgs] == ["4/13", "8/13", "10/13", "13/13", "1/3", "2/3", "3/3"]
    msgs.clear()
    entk.empirical_ntk(net, x, progress=msgs.append, max_memory_gb=1e-6)  # out of core
    assert msgs and msgs[-1].startswith("eNTK panel blocks") and "eta 0s" in msgs[-1]


@pytest.mark.parametrize("arch,in_shape,depth", [("mlp", (5,), 2), ("myrtle5", (1, 8, 8), None)])
def test_standard_parameterization_matches_jacobian(arch, in_shape, depth):
    net = models.build(arch, 12, in_shape, 3, depth=depth, parameterization="standard", b_std=0.1, seed=3)
    x = torch.randn((6,) + in_shape, generator=torch.Generator().manual_seed(2))
    for kind in ("mean", "full"):
        ref = entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64, implementation="jacobian")
        fast = entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64, implementation="layerwise")
        assert _rel(fast, ref) < 1e-10


def test_kernels_are_computed_without_tf32(monkeypatch):
    b = torch.backends
    if not hasattr(getattr(b.cudnn, "conv", None), "fp32_precision"):
        pytest.skip("this torch has only the allow_tf32 flags")
    before = (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision)
    seen = []

    def spy(*args):
        seen.append((b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision))
        raise RuntimeError("stop")
    monkeypatch.setattr(entk_fast, "layerwise_ntk", spy)
    monkeypatch.setattr(entk, "_jacobian_ntk", spy)
    net = models.build("mlp", 4, (3,), 2, depth=1)
    for impl in ("layerwise", "jacobian"):
        with pytest.raises(RuntimeError, match="stop"):
            entk.empirical_ntk(net, torch.randn(2, 3), implementation=impl)
        assert (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision) == before  # restored on error
    assert seen == [("ieee", "ieee")] * 2
