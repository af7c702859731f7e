"""The fused C kernel of the infinite-kernel pair step (native.py, pairstep.c): the torch path's numbers
(itself checked against neural-tangents in test_infinite.py), its arctangent against mpmath, its edge
cases, its threads, its build cache, and the fallback where it cannot be built."""
import math
import re

import numpy as np
import pytest
import torch

from ntkscaling.kernels.infinite import api as infinite, blocks as infinite_blocks, native


@pytest.fixture(autouse=True)
def _needs_native():
    if not native.available():
        pytest.skip(f"the native kernel does not build here: {native.unavailable_reason()}")


def _torch_step(S, T, qa, qb, w2, b2, pool):
    """The torch path's conv sum, affine map, ReLU (the step the C kernel declares it computes) and pooling on
    (N, H, W, H, W) covariances."""
    N, H, W = S.shape[:3]
    A, B = qa.shape[0], qb.shape[0]
    blocks = infinite_blocks._PairBlocks(None, (1, H, W), torch.float64, "cpu", False)
    conv = blocks._conv_sum(torch.stack([S, S if T is None else T]))
    qa5 = qa[:, None, :, :, None, None].expand(A, B, H, W, 1, 1).reshape(N, H, W, 1, 1)
    qb5 = qb[None, :, None, None].expand(A, B, 1, 1, H, W).reshape(N, 1, 1, H, W)
    out = torch.empty_like(conv)
    infinite_blocks._affine_then(native.PAIR_STEP)(conv[0], None if T is None else conv[1], qa5, qb5, out[0], out[1], w2, b2, False)
    return blocks._pool(out) if pool else out


def _covariances(N, H, W, seed):
    """Random positive semi-definite pixel covariances (N, H, W, H, W) for Sigma and Theta."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn((N, H * W, 5), generator=g, dtype=torch.float64)
    S = (f @ f.transpose(1, 2) / 5).reshape(N, H, W, H, W)
    return S.contiguous(), (1.5 * S + 0.1).contiguous()


@pytest.mark.parametrize("H,W,pool", [(8, 8, False), (8, 8, True), (6, 4, True), (5, 3, False), (1, 1, False)])
def test_pair_step_matches_the_torch_path(H, W, pool):
    A, B = 2, 3
    S, T = _covariances(A * B, H, W, 0)
    g = torch.Generator().manual_seed(1)
    qa = torch.rand((A, H, W), generator=g, dtype=torch.float64) * 3 + 0.5
    qb = torch.rand((B, H, W), generator=g, dtype=torch.float64) * 3 + 0.5
    Ho, Wo = (H // 2, W // 2) if pool else (H, W)
    for T_in in (T, None):
        out = torch.full((2, A * B, Ho, Wo, Ho, Wo), float("nan"), dtype=torch.float64)
        native.pair_step(qa, qb, 0.3, 0.05, pool, out[0], out[1], S=S, T=T_in)
        ref = _torch_step(S, T_in, qa, qb, 0.3, 0.05, pool)
        np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-14 * ref.abs().max().item())


def test_first_layer_from_images_and_threads():
    # Sigma before the first conv is the channel sum of x x' per pixel pair: from the images, the same
    # numbers as from that covariance; any thread split gives identical bits (each unit is computed alone)
    g = torch.Generator().manual_seed(2)
    xa = torch.randn((2, 3, 6, 6), generator=g, dtype=torch.float64)
    xb = torch.randn((3, 3, 6, 6), generator=g, dtype=torch.float64)
    S = torch.einsum("acp,bcq->abpq", xa.reshape(2, 3, 36), xb.reshape(3, 3, 36)).reshape(6, 6, 6, 6, 6)
    qa = torch.rand((2, 6, 6), generator=g, dtype=torch.float64) + 3
    qb = torch.rand((3, 6, 6), generator=g, dtype=torch.float64) + 3
    outs = []
    for kw, threads in (({"S": S.contiguous()}, 1), ({"xa": xa, "xb": xb}, 1), ({"xa": xa, "xb": xb}, 2),
                        ({"xa": xa, "xb": xb}, 5)):
        out = torch.empty((2, 6, 3, 3, 3, 3), dtype=torch.float64)
        native.pair_step(qa, qb, 0.2, 0.0, True, out[0], out[1], threads=threads, **kw)
        outs.append(out)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-13)
    assert torch.equal(outs[1], outs[2]) and torch.equal(outs[1], outs[3])


def test_angle_edge_cases_match_atan2():
    # correlations of exactly +1, -1 and 0, a negative zero, variances of zero: the polynomial arctangent
    # and its reductions must give atan2's angles (0, pi, pi/2), and never NaN
    H = W = 1
    c = torch.tensor([1.0, -1.0, 0.0, -0.0, 0.5, -0.5, 1e-300, 0.0, 0.999999, -0.999999], dtype=torch.float64)
    qb_vals = torch.tensor([4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 0.0, 4.0, 4.0], dtype=torch.float64)
    n = len(c)
    S = (c * 2.0).reshape(n, 1, 1, 1, 1).contiguous()  # sqrt(q q') = 2 with q = 1, q' = 4
    T = torch.full_like(S, 0.7)
    qa = torch.ones((n, 1, 1), dtype=torch.float64)
    qb = qb_vals.reshape(n, 1, 1).contiguous()
    out = torch.empty((2, n, 1, 1, 1, 1), dtype=torch.float64)
    # each pair with itself (selves): qa[n] with qb[n]; w2 = 1 on a 1x1 image: the conv is the identity
    native.pair_step(qa, qb, 1.0, 0.0, False, out[0], out[1], S=S, T=T, selves=True)
    s = torch.sqrt(torch.clamp(qb_vals - (2 * c) ** 2, min=0))
    pm = math.pi - torch.atan2(s, 2 * c)
    want_S = (s + pm * 2 * c) / (2 * math.pi)
    want_T = (0.7 + 2 * c) * pm / (2 * math.pi)
    assert not torch.isnan(out).any()
    np.testing.assert_allclose(out[0].flatten(), want_S, rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(out[1].flatten(), want_T, rtol=1e-15, atol=1e-16)


def test_arctangent_polynomial_against_mpmath():
    # the coefficients in pairstep.c approximate atan(u) on |u| <= tan(pi/12) to 1 ulp (the reductions
    # cover the rest); checked in 50-digit arithmetic, independently of how they were derived
    mpmath = pytest.importorskip("mpmath")
    src = native.SOURCE.read_text()
    body = re.search(r"ATAN_C\[9\] = \{(.*?)\};", src, re.S).group(1)
    coef = [mpmath.mpf(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", body)]
    assert len(coef) == 9
    mpmath.mp.dps = 50
    bound = mpmath.tan(mpmath.pi / 12)
    assert abs(float(re.search(r"TAN_PI_12 = ([0-9.]+);", src).group(1)) - bound) < 1e-16
    worst = 0
    for k in range(-400, 401):
        u = bound * k / 400
        approx = u * sum(c * u ** (2 * j) for j, c in enumerate(coef))
        worst = max(worst, abs(approx - mpmath.atan(u)))
    assert worst < 1e-16


def test_kernels_match_the_torch_path_for_myrtle_depths():
    # whole kernels, symmetric and cross, on non-square images, biases, every Myrtle depth (convs after
    # convs without pooling, pooling at 8x8 and below)
    g = torch.Generator().manual_seed(4)
    for arch, shape in (("myrtle5", (2, 8, 12)), ("myrtle7", (1, 8, 8)), ("myrtle10", (3, 4, 8))):
        x = torch.randn((5,) + shape, generator=g, dtype=torch.float64)
        for x2 in (None, x[:2] * 0.5):
            fast = infinite.infinite_kernels(arch, shape, x, x2, b_std=0.3, native=True, batch_size=2)
            slow = infinite.infinite_kernels(arch, shape, x, x2, b_std=0.3, native=False, compile=False)
            for f, s in ((fast.ntk, slow.ntk), (fast.nngp, slow.nngp)):
                np.testing.assert_allclose(f, s, rtol=1e-13)


def test_build_is_cached_by_source_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKSCALING_CACHE", str(tmp_path))
    first = native._build()
    assert first.parent == tmp_path and first.exists()
    mtime = first.stat().st_mtime_ns
    assert native._build() == first and first.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not list(tmp_path.glob("*.tmp"))
    edited = tmp_path / "pairstep.c"
    edited.write_text(native.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(native, "SOURCE", edited)
    second = native._build()
    assert second != first and second.exists()  # a changed source gets its own library


def test_without_a_compiler_the_torch_path_runs_and_native_true_says_why(monkeypatch):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("CC", "no-such-compiler-ntkscaling")
    assert not native.available()
    assert "no-such-compiler-ntkscaling" in native.unavailable_reason()
    x = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    auto = infinite.infinite_kernels("myrtle5", (1, 8, 8), x)
    torch_path = infinite.infinite_kernels("myrtle5", (1, 8, 8), x, native=False, compile=False)
    for a, b in ((auto.ntk, torch_path.ntk), (auto.nngp, torch_path.nngp)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="native=True: the fused C kernel does not build.*no-such-compiler"):
        infinite.infinite_kernels("myrtle5", (1, 8, 8), x, native=True)
    with pytest.raises(RuntimeError, match="native=True: .* float64 only, not on cpu in torch.float32"):
        infinite.infinite_kernels("myrtle5", (1, 8, 8), x, native=True, dtype=torch.float32)
