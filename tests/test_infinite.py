"""Infinite-width NTK/NNGP against neural-tangents, closed forms, float32, and wide finite networks."""
import json
import math

import numpy as np
import pytest
import torch

from ntkscaling.kernels.empirical import api as entk
from ntkscaling.kernels.infinite import api as infinite, blocks as infinite_blocks, native
from ntkscaling import jobs
from ntkscaling.nets import models
from ntkscaling.nets import layers
from ntkscaling.nets.layers import Kernel


def _load(reference_dir, folder, x_name):
    meta = json.loads((reference_dir / folder / "meta.json").read_text())
    x = np.load(reference_dir / x_name)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(x), meta, np.load(reference_dir / folder / "ntk.npy"), np.load(reference_dir / folder / "nngp.npy")


CASES = [("mlp_L2_infinite", "x_mlp.npy", "mlp", 2), ("myrtle5_infinite", "x_img8.npy", "myrtle5", None)]


def _native_or_skip():
    if not native.available():
        pytest.skip(f"the native kernel does not build here: {native.unavailable_reason()}")
    return True


@pytest.mark.parametrize("folder,x_name,arch,depth,path", [c + (p,) for c in CASES for p in ("torch", "native")
                                                           if c[2] != "mlp" or p == "torch"])
def test_matches_neural_tangents_float64(reference_dir, folder, x_name, arch, depth, path):
    x, meta, ref_ntk, ref_nngp = _load(reference_dir, folder, x_name)
    use_native = path == "native" and _native_or_skip()
    kernel = infinite.infinite_kernels(arch, x.shape[1:], x, depth=depth, W_std=meta["W_std"], b_std=meta["b_std"],
                                       native=use_native, batch_size=3)
    ntk, nngp = kernel.ntk, kernel.nngp
    scale_ntk, scale_nngp = np.abs(ref_ntk).max(), np.abs(ref_nngp).max()
    off = ~np.eye(len(x), dtype=bool)
    assert np.abs(nngp.numpy() - ref_nngp).max() / scale_nngp < 1e-10
    assert np.abs(ntk.numpy() - ref_ntk)[off].max() / scale_ntk < 1e-10
    # On the diagonal (an input with itself) the reference carries its own rounding: it computes
    # sqrt(q q' - c^2) from two separately rounded covariances, an angle of ~1e-8 instead of 0 (the pitfall
    # its README names). Our diagonal is exact (see the closed form below); the reference's is within 1e-8.
    assert np.abs(np.diag(ntk.numpy()) - np.diag(ref_ntk)).max() / scale_ntk < 1e-8


def test_mlp_diagonal_closed_form():
    # same input: the ReLU angle is 0 in every layer, so Sigma halves and Theta halves at each ReLU
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(5, 7)))
    W2, b2, depth = 1.7, 0.3, 3
    kernel = infinite.infinite_kernels("mlp", (7,), x, depth=depth, W_std=W2 ** 0.5, b_std=b2 ** 0.5)
    ntk, nngp = kernel.ntk, kernel.nngp
    for i in range(5):
        S = float((x[i] ** 2).mean())
        T = 0.0
        for _ in range(depth):
            S = W2 * S + b2
            T = W2 * T + S
            S, T = S / 2, T / 2
        S = W2 * S + b2
        T = W2 * T + S
        assert nngp[i, i].item() == pytest.approx(S, rel=1e-14)
        assert ntk[i, i].item() == pytest.approx(T, rel=1e-14)


@pytest.mark.parametrize("arch,shape,depth", [("mlp", (12,), 2), ("myrtle5", (2, 8, 8), None),
                                              ("mlp", (2, 4, 4), 1)])
def test_float32_close_to_float64_and_blocks_and_cross(arch, shape, depth):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((6,) + shape, generator=g, dtype=torch.float64)
    k64 = infinite.infinite_kernels(arch, shape, x, depth=depth, b_std=0.2)
    k32 = infinite.infinite_kernels(arch, shape, x, depth=depth, b_std=0.2, dtype=torch.float32)
    ntk64 = k64.ntk
    for a, b in ((k32.ntk, k64.ntk), (k32.nngp, k64.nngp)):
        assert (a.double() - b).abs().max() / b.abs().max() < 1e-5
    small = infinite.infinite_kernels(arch, shape, x, depth=depth, b_std=0.2, batch_size=4).ntk
    np.testing.assert_allclose(small, ntk64, rtol=1e-13)
    cross = infinite.infinite_kernels(arch, shape, x[:2], x[2:], depth=depth, b_std=0.2, batch_size=3).ntk
    np.testing.assert_allclose(cross, ntk64[:2, 2:], rtol=1e-13)
    assert torch.linalg.eigvalsh(ntk64).min() > -1e-12 * ntk64.diagonal().max()


def test_kernels_are_read_by_name_never_unpacked():
    x = torch.randn(3, 4, dtype=torch.float64)
    kernel = infinite.infinite_kernels("mlp", (4,), x, depth=1)
    of_layers = infinite.infinite_kernels_of(models.infinite_layers(models.build("mlp", 8, (4,), 1, depth=1)), x)
    for k in (kernel, of_layers):
        assert isinstance(k, Kernel)
        with pytest.raises(TypeError, match="read by name"):
            ntk, nngp = k
    np.testing.assert_allclose(kernel.ntk, of_layers.ntk, rtol=1e-12)
    assert not torch.allclose(kernel.ntk, kernel.nngp)  # distinct fields: a swap would be visible


def test_compiled_pair_steps_match_eager_and_reference(reference_dir):
    # the torch.compile-fused affine+ReLU step (what large jobs use) gives the eager numbers, the
    # neural-tangents reference, and the exact diagonal; float32 compiled stays within 1e-5 of float64
    import shutil
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        pytest.skip("no C++ compiler for torch.compile on the CPU (the eager fallback is tested below)")
    x, meta, ref_ntk, ref_nngp = _load(reference_dir, "myrtle5_infinite", "x_img8.npy")
    eager = infinite.infinite_kernels("myrtle5", x.shape[1:], x, W_std=meta["W_std"], b_std=meta["b_std"],
                                      compile=False, native=False)
    fused = infinite.infinite_kernels("myrtle5", x.shape[1:], x, W_std=meta["W_std"], b_std=meta["b_std"],
                                      compile=True, batch_size=3, native=False)
    assert not infinite_blocks._FUSED.get("failed"), "torch.compile fell back to eager on this machine"
    for e, f, ref in ((eager.ntk, fused.ntk, ref_ntk), (eager.nngp, fused.nngp, ref_nngp)):
        np.testing.assert_allclose(f, e, rtol=1e-13)
        off = ~np.eye(len(x), dtype=bool)
        assert np.abs(f.numpy() - ref)[off].max() / np.abs(ref).max() < 1e-10
    g = torch.Generator().manual_seed(2)
    y = torch.randn((5, 2, 8, 8), generator=g, dtype=torch.float64)
    k64 = infinite.infinite_kernels("myrtle5", (2, 8, 8), y, b_std=0.3, compile=True, native=False)
    k32 = infinite.infinite_kernels("myrtle5", (2, 8, 8), y, b_std=0.3, compile=True, dtype=torch.float32)
    for a, b in ((k32.ntk, k64.ntk), (k32.nngp, k64.nngp)):
        assert (a.double() - b).abs().max() / b.abs().max() < 1e-5


class _ScaledReLU(layers.ReLU):
    """c relu(h): a layer type added as the layer docstring says, one class; its infinite step is c^2 times
    the ReLU's (both kernels), and it declares its rule for the block engine itself."""
    type = "scaled_relu"
    on_blocks = True

    def __init__(self, c):
        super().__init__()
        self.c2 = c * c

    def forward(self, h):
        return self.c2 ** 0.5 * torch.relu(h)

    def infinite(self, kernel):
        relu = super().infinite(kernel)
        return Kernel(nngp=relu.nngp * self.c2, ntk=relu.ntk * self.c2)

    def pair_step(self, S, T, qq, clip=True):
        S2, T2 = layers.relu_step(S, T, qq, clip)
        return S2 * self.c2, T2 * self.c2

    def own_step(self, q, T):
        return q / 2 * self.c2, T / 2 * self.c2


class _UndeclaredReLU(layers.ReLU):
    """A subclass that says nothing about the block engine: it inherits no claim to its parent's rule."""


@pytest.mark.parametrize("image", [False, True])
def test_block_engine_reads_each_layer_rule_off_the_layer(image):
    # a new nonlinearity class (one class, no engine edit) runs through the block engine, by its torch path
    # (the C kernel computes the ReLU's step only), and gives the plain walk's numbers (the definition)
    g = torch.Generator().manual_seed(5)
    if image:
        net = [layers.Conv(2, 1, 2 ** 0.5, 0.1), _ScaledReLU(1.3), layers.AvgPool(), layers.Conv(1, 1, 2 ** 0.5, 0.1),
               layers.ReLU(), layers.GlobalAvgPool(), layers.Dense(1, 1, 1.0, 0.2), _ScaledReLU(0.7),
               layers.Dense(1, 1, 1.0, 0.0)]
        x1, x2 = (torch.randn((n, 2, 4, 4), generator=g, dtype=torch.float64) for n in (5, 3))
    else:
        net = [layers.Flatten(), layers.Dense(6, 1, 1.5, 0.1), _ScaledReLU(1.3), layers.Dense(1, 1, 1.0, 0.2),
               layers.ReLU(), layers.Dense(1, 1, 1.0, 0.0)]
        x1, x2 = (torch.randn((n, 6), generator=g, dtype=torch.float64) for n in (5, 3))
    assert infinite_blocks.supports(net)
    assert not infinite_blocks.supports([_UndeclaredReLU()])
    for second in (None, x2):
        blocks = infinite.infinite_kernels_of(net, x1, second, implementation="blocks", batch_size=2)
        plain = infinite.infinite_kernels_of(net, x1, second, implementation="plain")
        for a, b in ((blocks.ntk, plain.ntk), (blocks.nngp, plain.nngp)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    if image:  # vector networks never use the C kernel
        with pytest.raises(RuntimeError, match="computes the ReLU's step only"):
            infinite.infinite_kernels_of(net, x1, implementation="blocks", native=True)


def test_native_kernel_declares_the_relu_step():
    assert native.PAIR_STEP is layers.ReLU.pair_step is layers.relu_step


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    # no C++ compiler (or an unsupported device): the same numbers, eagerly, and a warning saying why
    def broken_compile(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(infinite_blocks, "_FUSED", {})
    g = torch.Generator().manual_seed(3)
    x = torch.randn((3, 1, 8, 8), generator=g, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="torch.compile of the infinite-kernel nonlinearity step failed.*no C"):
        fallback = infinite.infinite_kernels("myrtle5", (1, 8, 8), x, compile=True, native=False)
    eager = infinite.infinite_kernels("myrtle5", (1, 8, 8), x, compile=False, native=False)
    for a, b in ((fallback.ntk, eager.ntk), (fallback.nngp, eager.nngp)):
        np.testing.assert_array_equal(a, b)


def test_empirical_ntk_approaches_infinite_ntk_as_width_grows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 10, generator=g, dtype=torch.float64)
    ntk_inf = infinite.infinite_kernels("mlp", (10,), x, depth=2, b_std=0.1).ntk
    widths = [64, 256, 1024, 4096]
    errors = []
    for w in widths:
        errs = []
        for seed in range(3):
            net = models.build("mlp", w, (10,), 4, depth=2, b_std=0.1, seed=seed)
            K = entk.empirical_ntk(net, x, kind="mean", dtype=torch.float64)
            errs.append(((K - ntk_inf).norm() / ntk_inf.norm()).item())
        errors.append(np.mean(errs))
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert -0.75 < slope < -0.3, (slope, errors)  # 1/sqrt(width)
    assert errors[-1] < 0.05


def test_progress_is_throttled_but_reports_the_end(monkeypatch):
    x = torch.randn((20, 1, 8, 8), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    msgs = []
    monkeypatch.setattr(jobs, "PROGRESS_SECONDS", 1e9)  # throttled whatever the machine's load
    infinite.infinite_kernels("myrtle5", (1, 8, 8), x, batch_size=4, progress=msgs.append, native=False)
    assert msgs[0] == "image pairs by the eager path, blocks of 4 images a side"  # what runs, said first
    assert len(msgs) == 2 and msgs[1].startswith("infinite kernel blocks 15/15")  # 5 x 5 blocks, upper triangle
    monkeypatch.setattr(jobs, "PROGRESS_SECONDS", 0.0)
    msgs.clear()
    infinite.infinite_kernels("myrtle5", (1, 8, 8), x, batch_size=4, progress=msgs.append)
    assert [m.split()[3] for m in msgs[1:]] == [f"{i}/15" for i in range(1, 16)]
