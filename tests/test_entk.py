"""eNTK engine: every implementation against the plain Jacobian contraction and neural-tangents' values."""
import re

import numpy as np
import pytest
import torch

from ntkscaling.kernels.empirical import api as entk, blocks as entk_blocks, layerwise as entk_fast
from ntkscaling import jobs, training
from ntkscaling.nets import models

from conftest import reference_network


def _kernel_only(*shape, itemsize=8):
    """A memory budget (GB) that holds the kernel of `shape` and one byte more: the one-row-at-a-time path."""
    return (int(np.prod(shape)) * itemsize + 1) / 1e9


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
    monkeypatch.setattr(entk_blocks, "FEATURE_CHUNK", 4)
    monkeypatch.setattr(entk_blocks, "CONTRACT_BLOCK", 3)
    for kind in ("full", "mean"):
        ref = whole if kind == "full" else torch.diagonal(whole, dim1=2, dim2=3).mean(-1)
        np.testing.assert_allclose(entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64), ref,
                                   rtol=1e-10, atol=1e-12)
    # out of core: a tiny budget (one row held, one streamed), and one that holds panels of a few rows
    # and streams blocks of columns (the panel path, symmetric and not)
    tiny_budget = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, max_memory_gb=_kernel_only(11, 11, 3, 3))
    np.testing.assert_allclose(tiny_budget, whole, rtol=1e-12, atol=1e-12)
    retained, transient = entk_fast.bytes_per_sample(net.double(), (1, 8, 8), 3, 8)
    net.float()
    some = (6 * retained + 4 * transient + 11 * 11 * 9 * 8) / 1e9  # chunk 4, panels of 4 rows, stream 2
    monkeypatch.setattr(entk_blocks, "CONTRACT_BLOCK", 2)
    np.testing.assert_allclose(entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, max_memory_gb=some),
                               whole, rtol=1e-12, atol=1e-12)
    x2 = torch.randn(5, 1, 8, 8)
    cross = entk.empirical_ntk(net, x, x2, dtype=torch.float64)
    for budget in (_kernel_only(11, 5), some):
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
    mixed = models.Network(myrtle.specs[:-2] + [{"type": "flatten"}] + myrtle.specs[-1:], "ntk")
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
    monkeypatch.setattr(entk_blocks, "FEATURE_CHUNK", 4)
    monkeypatch.setattr(entk_blocks, "CONTRACT_BLOCK", 4)
    msgs = []
    entk.empirical_ntk(net, x, progress=msgs.append)  # fast: only the end of each phase
    assert [m.split()[:3] for m in msgs] == [["eNTK", "feature", "rows"], ["eNTK", "Gram", "blocks"]]
    assert msgs[0].split()[3] == "10/10" and msgs[1].split()[3] == "6/6"  # 3 x 3 blocks, upper triangle
    monkeypatch.setattr(jobs, "PROGRESS_SECONDS", 0.0)
    msgs.clear()
    entk.empirical_ntk(net, x, x[:3], progress=msgs.append)
    assert [m.split()[3] for m in msgs] == ["4/13", "8/13", "10/13", "13/13", "1/3", "2/3", "3/3"]
    msgs.clear()
    entk.empirical_ntk(net, x, progress=msgs.append, max_memory_gb=_kernel_only(10, 10, itemsize=4))  # out of core
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
    monkeypatch.setattr(entk_blocks, "bounded_ntk", spy)
    monkeypatch.setattr(entk, "_jacobian_ntk", spy)
    net = models.build("mlp", 4, (3,), 2, depth=1)
    for impl in ("layerwise", "jacobian"):
        with pytest.raises(RuntimeError, match="stop"):
            entk.empirical_ntk(net, torch.randn(2, 3), implementation=impl)
        assert (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision) == before  # restored on error
    assert seen == [("ieee", "ieee")] * 2


class _ResidualNet(torch.nn.Module):
    """Layers the layerwise engine does not know: BatchNorm (eval), GELU, a residual block, adaptive pooling."""

    def __init__(self, c=6, out=4):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, c, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(c, out)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.bn(self.conv1(x)))
        h = h + torch.relu(self.conv2(h))
        return self.fc(self.pool(h).flatten(1))


@pytest.mark.parametrize("kind", ["mean", "sum", "full"])
def test_general_engine_matches_the_jacobian_contraction_in_and_out_of_core(kind):
    torch.manual_seed(0)
    net = _ResidualNet()
    x1, x2 = torch.randn(9, 2, 6, 6), torch.randn(4, 2, 6, 6)
    assert entk.engine(net) == "general"
    for b in (None, x2):
        ref = entk.empirical_ntk(net, x1, b, kind=kind, dtype=torch.float64, implementation="jacobian")
        C2 = 16 if kind == "full" else 1  # the full kind's (C, C) blocks per pair (4 logits)
        for budget in (None, _kernel_only(9, 4 if b is not None else 9, C2), 2e-4):  # all held; one row at a time;
            K = entk.empirical_ntk(net, x1, b, kind=kind, dtype=torch.float64, max_memory_gb=budget)
            assert _rel(K, ref) < 1e-10  # (and panels of a few rows)
        K32 = entk.empirical_ntk(net, x1, b, kind=kind, max_memory_gb=2e-4)
        assert K32.dtype == torch.float32 and _rel(K32, ref) < 1e-5
    assert net.training  # the caller's module is left as it was (it ran in eval mode)


def test_general_engine_differentiates_trainable_parameters_only():
    # a centred training module holds a frozen copy of the initial network: it adds nothing to the NTK
    module = training.NetworkModule(training.NetworkSettings("mlp", 8, depth=1), in_shape=(3,), out_dim=2)
    x = torch.randn(5, 3, dtype=torch.float64)
    K = entk.empirical_ntk(module, x, dtype=torch.float64, implementation="general")
    np.testing.assert_allclose(K, entk.empirical_ntk(module.net, x, dtype=torch.float64), rtol=1e-12)


def test_general_engine_stays_within_its_memory_budget():
    # an 85k-parameter MLP with 10 outputs: the per-sample Jacobians of n = 120 take 0.41 GB in float32; a
    # 0.1 GB budget holds panels of about 10 rows and streams the rest
    from ntkscaling.kernels.empirical.general import trainable_parameters
    import psutil
    import threading
    import time
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256), torch.nn.Tanh(),
                              torch.nn.Linear(256, 10))
    n, P = 120, sum(p.numel() for p in trainable_parameters(net).values())
    assert n * 10 * P * 4 > 0.4e9
    x = torch.randn(n, 64)
    proc, peak, stop = psutil.Process(), [0], []
    base = proc.memory_info().rss

    def sample():
        while not stop:
            peak[0] = max(peak[0], proc.memory_info().rss - base)
            time.sleep(0.005)
    t = threading.Thread(target=sample)
    t.start()
    try:
        K = entk.empirical_ntk(net, x, max_memory_gb=0.1)
    finally:
        stop.append(True)
        t.join()
    assert peak[0] < 0.16e9, f"peak {peak[0] / 1e9:.2f} GB above the start for a 0.1 GB budget"
    # float32 over 85k parameters x 10 logits per entry: within 1e-5 of float64
    sub = entk.empirical_ntk(net, x[:12], implementation="jacobian", dtype=torch.float64)
    assert _rel(K[:12, :12], sub) < 1e-5


class _CountingSource:
    """A feature source that counts the per-sample features computed, sample by sample."""

    def __init__(self, source):
        self.source, self.counts = source, {}
        self.kind, self.logits = source.kind, source.logits

    def bytes_per_sample(self, *a):
        return self.source.bytes_per_sample(*a)

    def alloc(self, *a):
        return self.source.alloc(*a)

    def contract(self, *a):
        return self.source.contract(*a)

    def compute(self, x, into, lo, scratch):
        for row in x:
            key = tuple(row.flatten()[:4].tolist())
            self.counts[key] = self.counts.get(key, 0) + 1
        self.source.compute(x, into, lo, scratch)


@pytest.mark.parametrize("n1,n2", [(23, None), (23, 5), (5, 23)])
@pytest.mark.parametrize("slots", [3, 7, 12])
def test_out_of_core_computes_each_sample_as_often_as_the_plan_says(n1, n2, slots):
    # the general engine out of core: the kernel of the Jacobian contraction, and the per-sample Jacobians
    # computed exactly as `Plan.feature_rows` counts them; for a symmetric kernel, a sample of panel k (from 0)
    # k + 1 times (sum over samples of i // panel + 1: the closed form the docs quote), else n_held +
    # panels x n_streamed, on whichever side is cheaper to hold
    from ntkscaling.kernels.empirical.general import JacobianFeatures
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    x1 = torch.randn(n1, 6, dtype=torch.float64)
    x2 = None if n2 is None else torch.randn(n2, 6, dtype=torch.float64)
    source = _CountingSource(JacobianFeatures(net, "mean", (6,), torch.float64, "cpu"))
    retained, transient = source.bytes_per_sample((6,), 8)
    n_cols = n1 if x2 is None else n2
    out = n1 * n_cols * 8
    # a budget that leaves `slots` samples' features beside the margin and one chunk of 1 (its transient
    # share is too small for more)
    budget = (out + (transient + (slots + 0.5) * retained) / (1 - entk_blocks.OUT_OF_CORE_MARGIN)) / 1e9
    layout = entk_blocks.plan(retained, transient, n1, n_cols, x2 is None, budget * 1e9 - out)
    assert not layout.held and layout.chunk == 1 and layout.panel + layout.stream == slots
    K = entk_blocks.bounded_ntk(source, x1, x2, budget, None)
    ref = entk.empirical_ntk(net, x1, x2, dtype=torch.float64, implementation="jacobian")
    assert _rel(K, ref) < 1e-12
    assert sum(source.counts.values()) == layout.feature_rows
    if x2 is None:
        assert layout.feature_rows == sum(i // layout.panel + 1 for i in range(n1))
        assert max(source.counts.values()) == -(-n1 // layout.panel)
    else:
        held, streamed = (n2, n1) if layout.hold_columns else (n1, n2)
        assert layout.feature_rows == held + -(-held // layout.panel) * streamed
        assert layout.hold_columns == (n1 > n2)  # the smaller side is held


def test_out_of_core_panels_grow_with_the_budget():
    # at n = 512 with room for 360 samples (ResNet-20 w16's Jacobians in 4 GB), fewer than 2 n features are
    # computed; the plan never holds more than the budget
    retained, transient = 10.9e6, 34.5e6
    rows = []
    for fraction in (1 / 16, 1 / 4, 0.7):
        avail = fraction * 512 * retained
        layout = entk_blocks.plan(retained, transient, 512, 512, True, avail)
        assert (layout.panel + layout.stream) * retained + layout.chunk * transient <= avail
        rows.append(layout.feature_rows)
    assert rows[0] > rows[1] > rows[2] and rows[2] < 2 * 512


class _Doubled(models.layers.Dense):
    """A Dense whose forward is changed but whose backward rule (vjp) is its parent's."""

    def forward(self, h):
        return 2 * super().forward(h)


class _OtherVjp(models.layers.ReLU):
    """A ReLU whose backward rule is overridden without its forward."""

    def vjp(self, g, h):
        return g


def _refused_shapes():
    """(name, module, what the refusal says) for sequences of the library's layers that its rules would not
    compute; each checked against the Jacobian reference."""
    L = models.layers
    torch.manual_seed(3)
    tied = L.Dense(4, 4, 1.3, 0.1)
    shared_a, shared_b = L.Dense(4, 4, 1.3, 0.1), L.Dense(4, 4, 1.3, 0.1)
    shared_b.weight = shared_a.weight
    hooked = L.Dense(4, 4, 1.3, 0.1)
    hooked.register_forward_hook(lambda module, args, out: out * 1.5)
    cases = [("a layer used twice", [tied, L.ReLU(), tied], "layer 2 (Dense) is layer 0 used again"),
             ("a shared weight", [shared_a, L.ReLU(), shared_b], "layers 0 and 2 share a parameter"),
             ("a subclass with its own forward", [L.Dense(4, 4, 1.3, 0.1), L.ReLU(), _Doubled(4, 4, 1.3, 0.1)],
              "_Doubled defines its own forward but inherits vjp from Dense"),
             ("a backward rule without its forward", [L.Dense(4, 4, 1.3, 0.1), _OtherVjp()],
              "_OtherVjp defines vjp but runs the forward of ReLU"),
             ("a forward hook", [hooked, L.ReLU()], "0 carries a forward hook")]
    out = []
    for name, body, says in cases:
        net = torch.nn.Sequential(*body, L.ReLU(), L.Dense(4, 3, 1.0, 0.1)).double()
        for p in net.parameters():
            torch.nn.init.normal_(p)
        out.append((name, net, says))
    return out


@pytest.mark.parametrize("case", range(5), ids=[c[0] for c in _refused_shapes()])
def test_engines_refuse_what_their_layer_rules_do_not_compute(case):
    """Tied weights, a subclass whose rules are not its forward's, a hook: 'auto' goes to the general engine
    (the Jacobian reference's numbers), an explicit layerwise or plain engine is refused naming the reason."""
    from ntkscaling.kernels.infinite import api as infinite
    name, net, says = _refused_shapes()[case]
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert entk.engine(net) == "general"
    for kind in ("mean", "full"):
        ref = entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64, implementation="jacobian")
        auto = entk.empirical_ntk(net, x, kind=kind, dtype=torch.float64)
        assert _rel(auto, ref) < 1e-12
    for impl in ("layerwise", "plain"):
        with pytest.raises(ValueError, match=f"implementation=.{impl}. cannot compute this module: .*{re.escape(says)}"):
            entk.empirical_ntk(net, x, implementation=impl)
    if "hook" in name or "twice" in name or "shared" in name or "own forward" in name:
        with pytest.raises(ValueError, match="the infinite-width kernel of this sequence is not what"):
            infinite.infinite_kernels_of(list(net), x)

