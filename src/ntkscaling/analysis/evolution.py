"""Kernel evolution during training: how far and how fast the empirical NTK moves, checkpoint by checkpoint.

For one network (trained on n examples, checkpoints on a log-spaced schedule in steps, step 0 included),
the eNTK on a fixed probe set (its n training points, the validation set, the test set: data.kernel_rows)
at each checkpoint gives:
- kernel distance S(K1, K2) = 1 - <K1, K2>_F / (||K1||_F ||K2||_F) to the initial kernel, to the final
  kernel and to the previous checkpoint's kernel (0 for proportional kernels, 1 for orthogonal ones);
- kernel velocity: the angle between the kernel and the previous checkpoint's kernel (`kernel_angle`,
  arccos of their cosine similarity, in radians) per optimizer step and per epoch. The angle is a distance
  on the sphere of normalized kernels, linear in the change: a kernel turning at a constant rate shows a
  constant velocity whatever the checkpoint schedule (S = 1 - cos grows as the square of the change, so S/dt
  would rise with the gap between checkpoints: a log-spaced schedule alone would make it climb). Once SGD
  noise moves the kernel, the angle of that diffusive part grows as the square root of the gap, so the angle
  to the previous checkpoint per step falls on a log-spaced schedule without any settling: the fixed-gap
  velocity (`velocity_gap_step`, and per unit of summed learning rate `velocity_gap_lr`) takes the angle
  between a checkpoint and its partner a fixed number of steps later (training.velocity_pairs), the same
  gap at every time, so a kernel that keeps sampling at one rate shows one velocity and only settling
  (or a smaller learning rate, which the per-learning-rate velocity takes out) lowers it;
- centred kernel alignment with the one-hot labels, on the training block and on the test block;
- the test error / MSE of kernel regression with that checkpoint's kernel on the same n training points
  (for uncentred networks the linearized predictor, with the checkpoint network's outputs as f0).
Only three kernels are held at once (initial, final, previous), so the cost is one eNTK per checkpoint.
`relative_distance` compares the eNTK at init of each width with the infinite NTK (width scaling).
"""
from __future__ import annotations

import numpy as np

from .regression import kernel_regression

EVOLUTION_METRICS = ("distance_init", "distance_final", "distance_prev", "angle_prev", "velocity_step",
                     "velocity_epoch", "velocity_gap_step", "velocity_gap_lr", "alignment_train", "alignment_test")


def _flat(K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.ndim == 4:  # full kind (n, n, C, C): the distance of the whole n*C block
        n1, n2, C, _ = K.shape
        K = K.transpose(0, 2, 1, 3).reshape(n1 * C, n2 * C)
    return K


def kernel_distance(K1, K2) -> float:
    """S(K1, K2) = 1 - <K1, K2>_F / (||K1||_F ||K2||_F); scale-free, in [0, 2] (in [0, 1] for PSD kernels)."""
    A, B = _flat(K1), _flat(K2)
    if A.shape != B.shape:
        raise ValueError(f"kernels differ in shape: {A.shape} vs {B.shape}")
    na, nb = np.linalg.norm(A), np.linalg.norm(B)
    if na == 0 or nb == 0:
        raise ValueError("kernel distance is undefined for a zero kernel")
    return float(1.0 - np.vdot(A, B) / (na * nb))


def kernel_angle(K1, K2) -> float:
    """The angle arccos(<K1, K2>_F / (||K1||_F ||K2||_F)) in radians, in [0, pi] (in [0, pi/2] for PSD kernels):
    the great-circle distance between the normalized kernels, so the angles of successive changes along one
    path add up. Equal to arccos(1 - S) with S the `kernel_distance`."""
    return float(np.arccos(np.clip(1.0 - kernel_distance(K1, K2), -1.0, 1.0)))


def relative_distance(K, K_ref) -> float:
    """||K - K_ref||_F / ||K_ref||_F: how far a finite-width kernel is from its infinite-width limit (unlike
    the kernel distance, this one sees a wrong overall scale too)."""
    A, B = _flat(K), _flat(K_ref)
    if A.shape != B.shape:
        raise ValueError(f"kernels differ in shape: {A.shape} vs {B.shape}")
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def _center(K: np.ndarray) -> np.ndarray:
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


def centered_alignment(K, labels, n_classes: int) -> float:
    """Centred kernel alignment <HKH, HYY^TH>_F / (||HKH||_F ||HYY^TH||_F) with one-hot labels Y
    (Cortes et al. 2012); 1 for K = YY^T. Full kernels use their mean over the logits."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim == 4:
        K = np.einsum("abcc->ab", K) / K.shape[-1]
    Y = np.eye(n_classes)[np.asarray(labels)]
    Kc, Lc = _center(K), _center(Y @ Y.T)
    denom = np.linalg.norm(Kc) * np.linalg.norm(Lc)
    return float(np.vdot(Kc, Lc) / denom) if denom > 0 else float("nan")


def track(checkpoints, kernel_of, labels, blocks: dict, n_classes: int, ridges, progress=print, prior_of=None,
          spectral=None, gap: int | None = None, lr_at=None):
    """Evolution rows for a list of checkpoints (dicts with 'step', 'epoch' and anything `kernel_of`
    needs, sorted by step). kernel_of(checkpoint) -> kernel on the probe set, whose 'train' and 'test'
    row blocks `blocks` names (data.row_blocks); the validation rows are not used here. prior_of(checkpoint)
    -> that checkpoint network's outputs on the same rows makes each regression the linearized predictor
    (uncentred networks); None: plain kernel regression. spectral(K) -> {metric: value} adds rows per
    checkpoint (e.g. theory.spectral_summary: how the spectrum's decay and label alignment move). `gap`: the
    fixed step gap of the velocity (pairs of checkpoints `gap` steps apart, training.velocity_pairs; one
    kernel at most waits for its partner); lr_at(step) -> the learning rate of that step, for the velocity per
    unit of summed learning rate.

    Returns a list of dicts {step, epoch, metric, value[, ridge]}.
    """
    checkpoints = sorted(checkpoints, key=lambda c: c["step"])
    if len(checkpoints) < 2:
        raise ValueError(f"kernel evolution needs at least 2 checkpoints, got {len(checkpoints)}")
    labels = np.asarray(labels)
    tr, te = blocks["train"], blocks["test"]
    y_train, y_test = labels[tr], labels[te]

    def checked(ckpt):
        K = np.asarray(kernel_of(ckpt), dtype=np.float64)
        if not np.all(np.isfinite(K)):
            raise FloatingPointError(f"the eNTK at step {ckpt['step']} contains NaN or inf")
        if not np.any(K):
            raise ValueError(f"the eNTK at step {ckpt['step']} is zero: no parameter moves the outputs (every "
                             f"ReLU inactive: the network died in training); lower train.lr")
        return K

    from ..training.settings import velocity_pairs
    pairs = dict(velocity_pairs([c["step"] for c in checkpoints], gap)) if gap else {}
    waiting = {}  # partner step -> (kernel, checkpoint) of the pair's start
    final = checked(checkpoints[-1])
    rows, init, prev = [], None, None
    for i, ckpt in enumerate(checkpoints):
        K = final if i == len(checkpoints) - 1 else checked(ckpt)
        init = K if init is None else init
        at = {"step": ckpt["step"], "epoch": ckpt["epoch"]}
        values = {"distance_init": kernel_distance(init, K), "distance_final": kernel_distance(K, final),
                  "alignment_train": centered_alignment(K[tr, tr], y_train, n_classes),
                  "alignment_test": centered_alignment(K[te, te], y_test, n_classes)}
        if prev is not None:
            values["distance_prev"] = kernel_distance(prev[0], K)
            angle = values["angle_prev"] = kernel_angle(prev[0], K)
            values["velocity_step"] = angle / max(ckpt["step"] - prev[1]["step"], 1e-12)
            values["velocity_epoch"] = angle / max(ckpt["epoch"] - prev[1]["epoch"], 1e-12)
        if spectral is not None:
            values.update(spectral(K))
        rows += [{**at, "metric": m, "value": v} for m, v in values.items()]
        if ckpt["step"] in waiting:  # the end of a fixed-gap pair: its velocity, at the pair's start
            K0, start = waiting.pop(ckpt["step"])
            angle = kernel_angle(K0, K)
            fixed = {"velocity_gap_step": angle / gap}
            if lr_at is not None:
                fixed["velocity_gap_lr"] = angle / sum(lr_at(s) for s in range(start["step"], ckpt["step"]))
            rows += [{"step": start["step"], "epoch": start["epoch"], "metric": m, "value": v} for m, v in fixed.items()]
        if ckpt["step"] in pairs:
            waiting[pairs[ckpt["step"]]] = (K, ckpt)
        f0 = None if prior_of is None else np.asarray(prior_of(ckpt), dtype=np.float64)
        for res in kernel_regression(K[tr, tr], K[te, tr], y_train, y_test, n_classes, ridges,
                                     prior_train=None if f0 is None else f0[tr],
                                     prior_test=None if f0 is None else f0[te]):
            for metric in ("error", "mse"):
                rows.append({**at, "ridge": res["ridge"], "metric": f"test_{metric}",
                             "value": float(res[metric].mean())})
        progress(f"checkpoint {i + 1}/{len(checkpoints)} step {ckpt['step']}: distance to init "
                 f"{values['distance_init']:.4f}, to final {values['distance_final']:.4f}")
        prev = (K, ckpt)
    return rows


def ridgeless_test_predictions(K, y, n: int, test, n_classes: int, prior=None) -> np.ndarray:
    """Test predictions of ridge-0 kernel regression (the limit of gradient flow) trained on the first n
    rows of K, at the rows `test`; `prior` (outputs of the network on every row) makes it the linearized
    predictor."""
    tr = np.arange(n)
    res = kernel_regression(np.asarray(K[np.ix_(tr, tr)], dtype=np.float64), K[np.ix_(test, tr)], y[:n], y[test],
                            n_classes, [0.0], prior_train=None if prior is None else prior[:n],
                            prior_test=None if prior is None else prior[test])[0]
    return res["pred"]


def width_distances(K, network_pred, y, n: int, blocks: dict, n_classes: int, probe: int, K_inf=None,
                    pred_inf=None, prior=None, linearized_pred=None) -> dict:
    """How far one width is from the infinite-width limit (width scaling, lazy-limit consistency).

    K: the eNTK at init of this width on data.kernel_rows' rows (blocks: data.row_blocks); network_pred: the
    trained network's test predictions at n. Returns {metric: value}: `prediction_distance_entk_init`, the
    relative distance between the network's predictions and ridge-0 kernel regression with K on the first n
    rows; with the infinite NTK `K_inf` (and its predictions `pred_inf`, `ridgeless_test_predictions`) also
    `prediction_distance_infinite_ntk` and, on a probe block (the first `probe` training rows, validation
    and test), `relative_distance_infinite` and `kernel_distance_infinite` of K to K_inf; with the test
    predictions of the linearized network trained the same way to the same step (`linearized_pred`),
    `prediction_distance_linearized`: the lazy-limit diagnostic, 0 in the lazy limit whether or not training
    converged (the distances to ridge-0 regression go to 0 only in the lazy limit *and* at convergence)."""
    test = np.arange(blocks["test"].start, blocks["test"].stop)
    pred = ridgeless_test_predictions(K, y, n, test, n_classes, prior)
    values = {"prediction_distance_entk_init": float(np.linalg.norm(network_pred - pred) / np.linalg.norm(pred))}
    if linearized_pred is not None:
        values["prediction_distance_linearized"] = float(np.linalg.norm(network_pred - linearized_pred)
                                                         / np.linalg.norm(linearized_pred))
    if K_inf is not None:
        values["prediction_distance_infinite_ntk"] = float(np.linalg.norm(network_pred - pred_inf)
                                                           / np.linalg.norm(pred_inf))
        rows = np.r_[0:min(probe, blocks["train"].stop), blocks["val"].start:blocks["test"].stop]
        Kp = np.asarray(K[np.ix_(rows, rows)], dtype=np.float64)
        ref = np.asarray(K_inf[np.ix_(rows, rows)], dtype=np.float64)
        values["relative_distance_infinite"] = relative_distance(Kp, ref)
        values["kernel_distance_infinite"] = kernel_distance(Kp, ref)
    return values
