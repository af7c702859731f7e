"""Lazy-limit consistency: the training side tied to the kernel side. A centred network in NTK
parameterization, trained by full-batch gradient descent on the MSE, moves its test predictions toward those
of its linearized model as width grows; for gradient descent the linearized model has a closed form, the
independent reference here: with c = 2 / (n C) (the loss is a mean over n points and C outputs), after S steps
of rate eta, f_test = K_test,train K^-1 (I - (I - eta c K)^S) Y. As S grows it becomes kernel regression with
ridge 0 (what the workflow's width-scaling stage compares with)."""
import numpy as np
import pytest
import torch

from ntkscaling import data, files, training
from ntkscaling.kernels.empirical import api as entk
from ntkscaling.kernels.infinite import api as infinite
from ntkscaling.nets import models

from conftest import run_settings

WIDTHS = (128, 512, 2048)
N, STEPS, LR = 64, 200, 2.0


def _gd_predictions(K_train, K_test_train, Y, lr, steps, n, n_classes):
    e, V = np.linalg.eigh(K_train)
    shrink = (1 - (1 - lr * 2 / (n * n_classes) * e) ** steps) / e
    return K_test_train @ (V @ (shrink[:, None] * (V.T @ Y)))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def digits_rows(tmp_path_factory):
    """The prepared digits and seed 0's order on disk, the kernel rows (x, y), their train and test slices and
    the rows as a float64 tensor."""
    root = tmp_path_factory.mktemp("lazy")
    d = data.prepare("digits", test_size=100, val_size=60)
    files.save_npz(root / "prepared.npz", **d)
    order = data.nested_order(d["y_train"], 0)
    files.save_npy(root / "order.npy", order)
    x, y = data.kernel_rows(d, order, N)
    blocks = data.row_blocks(N, d)
    return root, x, y, blocks["train"], blocks["test"], torch.from_numpy(x).double()


@pytest.fixture(scope="module")
def lazy_runs(digits_rows):
    root, x, y, tr, te, xt = digits_rows
    Y = np.eye(10)[y[tr]]
    K_inf = infinite.infinite_kernels("mlp", xt.shape[1:], xt, depth=2).ntk.numpy()
    pred_inf = _gd_predictions(K_inf[tr, tr], K_inf[te, tr], Y, LR, STEPS, N, 10)
    runs = {}
    for width in WIDTHS:
        _, records, saved = training.train_network(
            root / "prepared.npz", root / "order.npy", n=N, seed=0, out_dir=root / f"w{width}", **run_settings(
                arch="mlp", width=width, depth=2, center=True, optimizer="sgd", momentum=0.0, lr=LR, batch_size=N,
                steps=STEPS, lr_schedule="constant", warmup=0.0, progress=False))
        K = entk.empirical_ntk(models.load_network(saved[0]).double(), xt, kind="mean", dtype=torch.float64).numpy()
        runs[width] = {"net": records["network"]["pred"],
                       "gd": _gd_predictions(K[tr, tr], K[te, tr], Y, LR, STEPS, N, 10),
                       "krr": K[te, tr] @ np.linalg.solve(K[tr, tr], Y), "inf": pred_inf}
    return runs


def test_network_predictions_converge_to_their_eNTK_predictor_as_width_grows(lazy_runs):
    d = [_rel(lazy_runs[w]["net"], lazy_runs[w]["gd"]) for w in WIDTHS]
    assert d[0] > d[1] > d[2]
    assert d[2] < 0.6 * d[0]  # about width^-1/2: 16x the width, about 4x closer
    assert d[2] < 0.2


def test_network_predictions_converge_to_the_infinite_NTK_predictor(lazy_runs):
    d = [_rel(lazy_runs[w]["net"], lazy_runs[w]["inf"]) for w in WIDTHS]
    assert d[0] > d[1] > d[2] and d[2] < 0.6 * d[0]


def test_trained_to_convergence_the_predictor_is_ridge_zero_kernel_regression(lazy_runs):
    # what the workflow compares with: the residual (I - eta c K)^S left after STEPS is small
    for w in WIDTHS:
        assert _rel(lazy_runs[w]["gd"], lazy_runs[w]["krr"]) < 0.1
    d = [_rel(lazy_runs[w]["net"], lazy_runs[w]["krr"]) for w in WIDTHS]
    assert d[0] > d[2]


def test_a_large_output_scale_is_the_lazy_limit_at_a_fixed_width(digits_rows, tmp_path):
    # Chizat, Oyallon and Bach (2019): at width 128, alpha (f - f0) trained on loss / alpha^2 follows the
    # linearized model's gradient descent (the closed form above, with the network's own eNTK of the full kind:
    # at finite width the logits' blocks differ, so the mean kind is exact only at infinite width) ever more
    # closely as alpha grows, where alpha = 1 at the same width does not
    root, x, y, tr, te, xt = digits_rows
    gap = {}
    for alpha in (1.0, 30.0):
        _, records, saved = training.train_network(
            root / "prepared.npz", root / "order.npy", n=N, seed=0, out_dir=tmp_path / f"a{alpha}",
            **run_settings(arch="mlp", width=128, depth=2, center=True, output_scale=alpha, optimizer="sgd",
                           momentum=0.0, lr=LR, batch_size=N, steps=STEPS, lr_schedule="constant", warmup=0.0,
                           progress=False))
        K = entk.empirical_ntk(models.load_network(saved[0]).double(), xt, kind="full", dtype=torch.float64).numpy()
        K = K.transpose(0, 2, 1, 3).reshape(len(x) * 10, len(x) * 10)  # row a*C + c
        rows = lambda block: np.arange(block.start * 10, block.stop * 10)  # noqa: E731
        Y = np.eye(10)[y[tr]].reshape(-1, 1)
        gd = _gd_predictions(K[np.ix_(rows(tr), rows(tr))], K[np.ix_(rows(te), rows(tr))], Y, LR, STEPS, N, 10)
        gap[alpha] = _rel(records["network"]["pred"], gd.reshape(-1, 10))
    assert gap[30.0] < 0.3 * gap[1.0] and gap[30.0] < 0.06
