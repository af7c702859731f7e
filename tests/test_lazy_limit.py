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


# ------------------------------------------------------------------ the linearized network (training/linearized)
def _rows(tr, te):
    return {"train": tr, "val": slice(tr.stop, te.start), "test": te}


def test_the_linearized_network_is_the_closed_form_of_gradient_descent(digits_rows):
    """Full-batch gradient descent, no momentum, constant rate: the function-space dynamics must give the
    closed form K_te,tr K^-1 (I - (I - eta c K)^S) Y (full kind: the exact linearization; mean kind: its
    kernel times the identity over logits)."""
    from ntkscaling.training import linearized
    _, x, y, tr, te, xt = digits_rows
    net = models.build("mlp", 32, (1, 8, 8), 10, depth=1, seed=3).double()
    train = training.TrainSettings(lr=0.5, momentum=0.0, batch_size=N, steps=30, eval_points=0)
    for kind in ("mean", "full"):
        K = entk.empirical_ntk(net, xt, kind=kind, dtype=torch.float64).numpy()
        rec = linearized.train_linearized(K, y, N, _rows(tr, te), 0, train, 10)
        if kind == "mean":
            ref = _gd_predictions(K[tr, tr], K[te, tr], np.eye(10)[y[tr]], 0.5, 30, N, 10)
        else:
            Kf = K.transpose(0, 2, 1, 3).reshape(len(x) * 10, len(x) * 10)
            rows = lambda block: np.arange(block.start * 10, block.stop * 10)  # noqa: E731
            ref = _gd_predictions(Kf[np.ix_(rows(tr), rows(tr))], Kf[np.ix_(rows(te), rows(tr))],
                                  np.eye(10)[y[tr]].reshape(-1, 1), 0.5, 30, N, 10).reshape(-1, 10)
        assert _rel(rec["pred_last"], ref) < 1e-10, kind


def test_the_linearized_network_is_the_taylor_model_trained_by_torch_sgd(digits_rows):
    """Minibatches, momentum, warm-up and cosine decay: the function-space dynamics against the first-order
    Taylor model in parameter space (torch.func.jvp) trained by torch.optim.SGD on the same batches (the
    network's EpochBatches) and schedule, at output scale 5 (the dynamics do not depend on it)."""
    from torch.func import functional_call, jvp

    from ntkscaling.training import linearized
    from ntkscaling.training.batches import EpochBatches
    _, x, y, tr, te, xt = digits_rows
    net = models.build("mlp", 24, (1, 8, 8), 10, depth=1, seed=4).double()
    train = training.TrainSettings(lr=0.3, momentum=0.9, batch_size=16, steps=40, lr_schedule="cosine",
                                   warmup=0.1, eval_points=0)
    K = entk.empirical_ntk(net, xt, kind="full", dtype=torch.float64).numpy()
    rec = linearized.train_linearized(K, y, N, _rows(tr, te), 7, train, 10)
    theta0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    theta = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
    alpha = 5.0

    def g(params, inputs):  # alpha (f_lin - f0): the centred Taylor model
        delta = {k: params[k] - theta0[k] for k in params}
        return alpha * jvp(lambda p: functional_call(net, p, (inputs,)), (theta0,), (delta,))[1]
    opt = torch.optim.SGD(theta.values(), lr=train.lr, momentum=train.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: training.lr_factor(s, 40, "cosine", 0.1))
    sampler, step = EpochBatches(N, 7 * 1_000_003 + N, 16), 0
    labels = torch.from_numpy(y).long()
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for b in sampler:
            if step == 40:
                break
            out = g(theta, xt[tr][b])
            loss = ((out - torch.nn.functional.one_hot(labels[tr][b], 10).double()) ** 2).mean(-1).mean() / alpha ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    with torch.no_grad():
        ref = g(theta, xt[te]).numpy()
    assert _rel(rec["pred_last"], ref) < 1e-9


def test_a_lazy_network_follows_its_linearization_and_a_rich_one_does_not(digits_rows, tmp_path):
    """The workflow's own training (minibatch SGD with momentum, cosine schedule): at output scale 100 the
    network's test predictions are within its linearization error of the linearized network's (about
    0.02), at output scale 1 several times farther."""
    from ntkscaling.training import linearized
    root, x, y, tr, te, xt = digits_rows
    gap = {}
    for alpha in (1.0, 100.0):
        kw = run_settings(arch="mlp", width=256, depth=2, center=True, output_scale=alpha, optimizer="sgd",
                          momentum=0.9, lr=0.5, batch_size=16, steps=150, lr_schedule="cosine", warmup=0.05,
                          eval_points=0, progress=False)
        _, records, saved = training.train_network(root / "prepared.npz", root / "order.npy", n=N, seed=1,
                                                   out_dir=tmp_path / f"a{alpha}", **kw)
        K = entk.empirical_ntk(models.load_network(saved[0]).double(), xt, kind="full", dtype=torch.float64).numpy()
        rec = linearized.train_linearized(K, y, N, _rows(tr, te), 1, kw["train"], 10)
        gap[alpha] = _rel(records["network"]["pred"], rec["pred_last"])
    assert gap[100.0] < 0.05 and gap[1.0] > 3 * gap[100.0], gap


def test_the_linearized_network_refuses_what_is_not_a_kernel_flow():
    from ntkscaling.training import linearized
    for train, says in ((training.TrainSettings(optimizer="adam"), "Adam"),
                        (training.TrainSettings(weight_decay=1e-4), "weight_decay")):
        with pytest.raises(linearized.LinearizedError, match=says):
            linearized.train_linearized(np.eye(4), np.zeros(4, int), 2, {"val": slice(2, 3), "test": slice(3, 4)},
                                        0, train, 2)
    assert linearized.supported(training.TrainSettings(), "sum") is not None


def test_the_linearized_network_starts_without_lightning():
    """Its job imports torch and the batches, not Lightning (seconds per job in every run)."""
    import subprocess
    import sys
    code = ("import sys\nfrom ntkscaling import training\nfrom ntkscaling.training import linearized\n"
            "training.TrainSettings(); print('pytorch_lightning' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "False", res.stderr[-2000:]
