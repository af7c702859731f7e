"""Kernel-evolution metrics on cases with known answers, and the tracking loop against direct computation."""
import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from ntkscaling.analysis import evolution, theory


def _psd(rng, n, rank=None):
    A = rng.standard_normal((n, rank or n))
    return A @ A.T


def test_kernel_distance_known_values():
    rng = np.random.default_rng(0)
    K = _psd(rng, 12)
    assert evolution.kernel_distance(K, K) == pytest.approx(0.0, abs=1e-12)
    assert evolution.kernel_distance(K, 7.5 * K) == pytest.approx(0.0, abs=1e-12)  # scale-free
    e1, e2 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    assert evolution.kernel_distance(e1, e2) == pytest.approx(1.0)  # orthogonal
    # against the definition written out
    L = _psd(rng, 12)
    ref = 1 - np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))
    assert evolution.kernel_distance(K, L) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        evolution.kernel_distance(K, K[:5, :5])
    with pytest.raises(ValueError, match="zero kernel"):
        evolution.kernel_distance(K, 0 * K)


def test_full_kernels_are_compared_as_their_nC_blocks():
    rng = np.random.default_rng(1)
    J1, J2 = rng.standard_normal((6, 3, 20)), rng.standard_normal((6, 3, 20))
    full1, full2 = np.einsum("acp,bdp->abcd", J1, J1), np.einsum("acp,bdp->abcd", J2, J2)
    flat1, flat2 = J1.reshape(18, 20) @ J1.reshape(18, 20).T, J2.reshape(18, 20) @ J2.reshape(18, 20).T
    assert evolution.kernel_distance(full1, full2) == pytest.approx(evolution.kernel_distance(flat1, flat2))


def test_alignment_of_the_label_kernel_is_one():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 30)
    Y = np.eye(4)[y]
    assert evolution.centered_alignment(Y @ Y.T, y, 4) == pytest.approx(1.0)
    assert evolution.centered_alignment(3.0 * Y @ Y.T + 5.0, y, 4) == pytest.approx(1.0)  # centring removes constants
    K = _psd(rng, 30)
    a = evolution.centered_alignment(K, y, 4)
    H = np.eye(30) - 1 / 30
    Kc, Lc = H @ K @ H, H @ Y @ Y.T @ H
    assert a == pytest.approx(np.sum(Kc * Lc) / np.linalg.norm(Kc) / np.linalg.norm(Lc), rel=1e-10)
    assert -1 <= a <= 1


def test_relative_distance():
    rng = np.random.default_rng(3)
    K = _psd(rng, 10)
    assert evolution.relative_distance(K, K) == 0
    assert evolution.relative_distance(1.1 * K, K) == pytest.approx(0.1)  # sees the scale, unlike S


def test_track_matches_direct_computation():
    rng = np.random.default_rng(4)
    n, m, C = 20, 15, 3
    labels = rng.integers(0, C, n + m)
    A, B = _psd(rng, n + m), _psd(rng, n + m)
    ckpts = [{"step": s, "epoch": s / 4, "t": t} for s, t in ((0, 0.0), (1, 0.1), (4, 0.5), (40, 1.0))]
    kernel_of = lambda c: (1 - c["t"]) * A + c["t"] * B  # noqa: E731
    blocks = {"train": slice(0, n), "val": slice(n, n + 5), "test": slice(n + 5, n + m)}  # validation rows unused
    rows = evolution.track(ckpts, kernel_of, labels, blocks, C, ridges=[0.1], progress=lambda m: None)
    got = {(r["step"], r["metric"]): r["value"] for r in rows}
    assert got[(0, "distance_init")] == pytest.approx(0, abs=1e-12)
    assert got[(40, "distance_final")] == pytest.approx(0, abs=1e-12)
    assert (0, "distance_prev") not in got  # nothing before step 0
    d = evolution.kernel_distance(kernel_of(ckpts[1]), kernel_of(ckpts[2]))
    assert got[(4, "distance_prev")] == pytest.approx(d)
    angle = np.arccos(1 - d)  # the angle between the normalized kernels
    assert got[(4, "angle_prev")] == pytest.approx(angle)
    assert got[(4, "velocity_step")] == pytest.approx(angle / 3)
    assert got[(4, "velocity_epoch")] == pytest.approx(angle / 0.75)
    assert got[(1, "distance_final")] == pytest.approx(evolution.kernel_distance(kernel_of(ckpts[1]), B))
    # the kernel's own test error: an independent kernel ridge solve (sklearn) on the same blocks
    K = kernel_of(ckpts[2])
    lam = 0.1 * np.mean(np.diag(K[:n, :n]))
    pred = KernelRidge(alpha=lam, kernel="precomputed").fit(K[:n, :n], np.eye(C)[labels[:n]]).predict(K[n + 5:, :n])
    assert got[(4, "test_error")] == pytest.approx(np.mean(pred.argmax(1) != labels[n + 5:]))
    assert got[(4, "test_mse")] == pytest.approx(np.mean((pred - np.eye(C)[labels[n + 5:]]) ** 2), rel=1e-8)


def test_track_refuses_a_dead_network_and_a_single_checkpoint():
    K = np.eye(6)
    with pytest.raises(ValueError, match="network died"):
        evolution.track([{"step": 0, "epoch": 0}, {"step": 5, "epoch": 1}],
                        lambda c: K if c["step"] == 0 else 0 * K, np.arange(6) % 2,
                        {"train": slice(0, 3), "val": slice(3, 3), "test": slice(3, 6)}, 2, [0.1], progress=print)
    with pytest.raises(ValueError, match="at least 2"):
        evolution.track([{"step": 0, "epoch": 0}], lambda c: K, np.arange(6) % 2,
                        {"train": slice(0, 3), "val": slice(3, 3), "test": slice(3, 6)}, 2, [0.1])


def test_track_uses_the_linearized_predictor_with_a_prior():
    rng = np.random.default_rng(5)
    n, m, C = 20, 15, 3
    labels = rng.integers(0, C, n + m)
    A = _psd(rng, n + m)
    f0 = rng.normal(size=(n + m, C))
    ckpts = [{"step": 0, "epoch": 0.0}, {"step": 8, "epoch": 2.0}]
    blocks = {"train": slice(0, n), "val": slice(n, n), "test": slice(n, n + m)}
    rows = evolution.track(ckpts, lambda c: A, labels, blocks, C, ridges=[0.0], progress=lambda msg: None,
                           prior_of=lambda c: f0)
    got = {(r["step"], r["metric"]): r["value"] for r in rows}
    pred = f0[n:] + A[n:, :n] @ np.linalg.solve(A[:n, :n], np.eye(C)[labels[:n]] - f0[:n])
    assert got[(8, "test_mse")] == pytest.approx(np.mean((pred - np.eye(C)[labels[n:]]) ** 2), rel=1e-6)
    plain = {(r["step"], r["metric"]): r["value"] for r in evolution.track(
        ckpts, lambda c: A, labels, blocks, C, ridges=[0.0], progress=lambda msg: None)}
    assert plain[(8, "test_mse")] != pytest.approx(got[(8, "test_mse")])


def test_track_adds_the_spectral_summary_of_every_checkpoint():
    rng = np.random.default_rng(5)
    feats = [rng.standard_normal((12, 6)) for _ in range(3)]
    ckpts = [{"step": s, "epoch": s, "K": f @ f.T} for s, f in zip((0, 5, 10), feats)]
    labels = rng.integers(0, 3, 12)
    blocks = {"train": slice(0, 6), "val": slice(6, 8), "test": slice(8, 12)}
    seen = []

    def spectral(K):
        seen.append(K)
        return {"spectrum_b": float(np.trace(K))}
    rows = evolution.track(ckpts, lambda c: c["K"], labels, blocks, 3, ridges=[0.1], progress=lambda m: None,
                           spectral=spectral)
    got = {r["step"]: r["value"] for r in rows if r["metric"] == "spectrum_b"}
    assert got == pytest.approx({c["step"]: np.trace(c["K"]) for c in ckpts})
    assert len(seen) == 3
    summary = theory.spectral_summary(ckpts[0]["K"], np.eye(3)[labels], np.arange(8), modes=(1, 5), top_k=2)
    assert set(summary) == {"spectrum_b", "target_a", "alignment_top2"} and 0 < summary["alignment_top2"] <= 1


def test_a_kernel_turning_at_a_constant_rate_has_a_constant_velocity_on_any_schedule():
    # K(t) = cos(w t) A + sin(w t) B with A, B Frobenius-orthonormal: the normalized kernel turns by w per step.
    # The default log-spaced schedule with an inserted epoch checkpoint, as training records it.
    rng = np.random.default_rng(6)
    n, w = 16, 4e-4
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = Q[:, :8] @ np.diag(rng.uniform(1, 2, 8)) @ Q[:, :8].T  # PSD on orthogonal subspaces: <A, B>_F = 0
    B = Q[:, 8:] @ np.diag(rng.uniform(1, 2, 8)) @ Q[:, 8:].T
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    steps = sorted({0, 7, 100} | {int(round(s)) for s in np.logspace(0, np.log10(3000), 12)})
    ckpts = [{"step": s, "epoch": s / 7, "K": np.cos(w * s) * A + np.sin(w * s) * B} for s in steps]
    labels = rng.integers(0, 2, n)
    blocks = {"train": slice(0, 10), "val": slice(10, 10), "test": slice(10, n)}
    rows = evolution.track(ckpts, lambda c: c["K"], labels, blocks, 2, ridges=[0.1], progress=lambda m: None)
    velocity = np.array([r["value"] for r in rows if r["metric"] == "velocity_step"])
    assert len(velocity) == len(steps) - 1
    assert velocity == pytest.approx(w, rel=1e-6)
    per_epoch = np.array([r["value"] for r in rows if r["metric"] == "velocity_epoch"])
    assert per_epoch == pytest.approx(7 * w, rel=1e-6)
    # the squared measure S / dt the velocity used to be: driven by the schedule's gaps, not by the kernel
    s_rate = np.array([r["value"] for r in rows if r["metric"] == "distance_prev"]) / np.diff(steps)
    assert s_rate.max() / s_rate.min() > 100


def test_width_distances_against_direct_computation():
    """Each width-scaling distance against numpy's own solve: ridge-0 regression on the first n rows (plain
    and linearized), the network's relative distance to it, and K against the infinite kernel on the probe
    rows (the first `probe` training rows, validation and test)."""
    rng = np.random.default_rng(6)
    n_max, n, C, probe = 30, 20, 3, 12
    blocks = {"train": slice(0, n_max), "val": slice(n_max, n_max + 5), "test": slice(n_max + 5, n_max + 15)}
    rows = n_max + 15
    y = rng.integers(0, C, rows)
    K, K_inf = _psd(rng, rows), _psd(rng, rows)
    f0 = rng.normal(size=(rows, C))
    te = np.arange(n_max + 5, rows)
    target = np.eye(C)[y[:n]]
    direct = K[te, :n] @ np.linalg.solve(K[:n, :n], target)
    linearized = f0[te] + K[te, :n] @ np.linalg.solve(K[:n, :n], target - f0[:n])
    direct_inf = K_inf[te, :n] @ np.linalg.solve(K_inf[:n, :n], target)
    np.testing.assert_allclose(evolution.ridgeless_test_predictions(K, y, n, te, C), direct, rtol=1e-6, atol=1e-8)
    net = direct + 0.1 * rng.normal(size=direct.shape)
    got = evolution.width_distances(K, net, y, n, blocks, C, probe, K_inf, direct_inf)
    assert got["prediction_distance_entk_init"] == pytest.approx(
        np.linalg.norm(net - direct) / np.linalg.norm(direct), rel=1e-6)
    assert got["prediction_distance_infinite_ntk"] == pytest.approx(
        np.linalg.norm(net - direct_inf) / np.linalg.norm(direct_inf), rel=1e-6)
    p = np.r_[0:probe, n_max:rows]
    assert got["relative_distance_infinite"] == pytest.approx(evolution.relative_distance(K[np.ix_(p, p)],
                                                                                          K_inf[np.ix_(p, p)]))
    assert got["kernel_distance_infinite"] == pytest.approx(evolution.kernel_distance(K[np.ix_(p, p)],
                                                                                      K_inf[np.ix_(p, p)]))
    lazy = evolution.width_distances(K, linearized, y, n, blocks, C, probe, prior=f0)  # the lazy limit: 0
    assert set(lazy) == {"prediction_distance_entk_init"} and lazy["prediction_distance_entk_init"] < 1e-6


def _paths(kind, steps, rng, n=16, w=4e-4, noise=0.02, tau=300.0):
    """Synthetic kernel paths with a known truth, at `steps`: 'rotation' (turns at w per step forever),
    'noise' (a fixed kernel plus fresh sampling noise at every step: stationary, never settles), 'drift'
    (relaxes to a fixed kernel with time constant tau: settles), 'drift+noise' (settles onto a noise floor)."""
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = Q[:, :8] @ np.diag(rng.uniform(1, 2, 8)) @ Q[:, :8].T
    B = Q[:, 8:] @ np.diag(rng.uniform(1, 2, 8)) @ Q[:, 8:].T
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)

    def at(s):
        if kind == "rotation":
            return np.cos(w * s) * A + np.sin(w * s) * B
        K = A + (0.5 * np.exp(-s / tau) * B if "drift" in kind else 0)
        if "noise" in kind:
            E = rng.standard_normal((n, n))
            K = K + noise * (E + E.T) / np.sqrt(2 * n * n)
        return K
    return [{"step": s, "epoch": s / 7, "K": at(s)} for s in steps]


@pytest.mark.parametrize("kind", ["rotation", "noise", "drift", "drift+noise"])
def test_the_fixed_gap_velocity_separates_settling_from_sampling(kind):
    """On the log-spaced schedule with each checkpoint's partner a fixed gap later (as training saves them):
    a rotating or a stationary noisy kernel keeps one fixed-gap velocity (the angle to the previous checkpoint
    per step falls 6x and more on the same noisy path: its 'settling' is the schedule's), a relaxing one slows
    by orders of magnitude, onto the noise floor when there is one; per unit of summed learning rate a
    constant rate of 0.1 divides it by 0.1."""
    from ntkscaling import training
    rng = np.random.default_rng(11)
    total, gap = 3000, training.velocity_gap_steps(3000, 0.01)
    base = sorted({0, total} | {int(round(s)) for s in np.logspace(0, np.log10(total), 16)})
    steps = training.with_velocity_partners(base, total, gap)
    ckpts = _paths(kind, steps, rng, **({"noise": 0.004, "tau": 100.0} if kind == "drift+noise" else {}))
    blocks = {"train": slice(0, 10), "val": slice(10, 10), "test": slice(10, 16)}
    rows = evolution.track(ckpts, lambda c: c["K"], rng.integers(0, 2, 16), blocks, 2, ridges=[0.1],
                           progress=lambda m: None, gap=gap, lr_at=lambda s: 0.1)
    fixed = {r["step"]: r["value"] for r in rows if r["metric"] == "velocity_gap_step"}
    per_lr = {r["step"]: r["value"] for r in rows if r["metric"] == "velocity_gap_lr"}
    assert sorted(fixed) == [t for t, _ in training.velocity_pairs(steps, gap)] and len(fixed) >= 6
    assert per_lr == pytest.approx({t: v / 0.1 for t, v in fixed.items()})
    v = np.array([fixed[t] for t in sorted(fixed)])
    if kind == "rotation":
        assert v == pytest.approx(4e-4, rel=1e-6)
    elif kind == "noise":
        assert v.max() / v.min() < 1.6  # stationary: one velocity, whatever the time
        old = np.array([r["value"] for r in rows if r["metric"] == "velocity_step"])
        assert old[:3].mean() / old[-3:].mean() > 6  # the previous-checkpoint velocity 'settles' anyway
    elif kind == "drift":
        assert v[0] / v[-1] > 100
    else:  # settles onto the noise floor: the early velocity is the drift's, the late one the noise's
        assert v[0] / v[-1] > 3 and v[-3:].max() / v[-3:].min() < 1.6


def test_velocity_pairs_never_overlap_and_training_saves_the_partners():
    from ntkscaling import training
    steps = training.with_velocity_partners([0, 1, 2, 3, 5, 8, 13, 40, 100], 100, 10)
    assert {0, 10, 11, 12, 13, 15, 18, 23, 50} <= set(steps) and 110 not in steps
    assert training.velocity_pairs(steps, 10) == [(0, 10), (13, 23), (40, 50)]  # earliest first, none overlapping
