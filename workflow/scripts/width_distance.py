"""Adapter: width scaling per seed. (1) How far the eNTK at init of each width is from the infinite NTK (on a
probe block of rows). (2) Lazy-limit consistency: how far each trained network's test predictions at
n = width_scaling.n are from the predictions of kernel regression (ridge 0) with its own eNTK at init and
with the infinite NTK; in the lazy limit (wide, NTK parameterization, centred, trained to convergence) both
distances go to 0."""
import numpy as np

from ntkscaling import data, evolution, io, regression

with io.job(snakemake):
    p = snakemake.params
    n_max, n = p.n_max, p.n
    d = data.load_prepared(snakemake.input.data)
    order = io.load_npy(snakemake.input.order)
    y = data.kernel_rows(d, order, n_max)[1]
    blocks = data.row_blocks(n_max, d)
    n_classes = int(d["n_classes"])
    held_out = np.arange(blocks["val"].start, blocks["test"].stop)
    probe = np.r_[0:min(p.probe, n_max), held_out]  # probe train rows, then validation and test
    test = np.arange(blocks["test"].start, blocks["test"].stop)

    def kernel_predictions(K, prior=None):
        """Ridge-0 kernel regression (the limit of gradient flow) on the first n rows; test predictions."""
        tr = np.arange(n)
        res = regression.kernel_regression(np.asarray(K[np.ix_(tr, tr)], dtype=np.float64), K[np.ix_(test, tr)],
                                           y[:n], y[test], n_classes, [0.0],
                                           prior_train=None if prior is None else prior[:n],
                                           prior_test=None if prior is None else prior[test])[0]
        return res["pred"]

    K_inf = io.load_npy(snakemake.input.infinite[0], mmap=True) if snakemake.input.infinite else None
    ref = np.asarray(K_inf[np.ix_(probe, probe)], dtype=np.float64) if K_inf is not None else None
    pred_inf = kernel_predictions(K_inf) if K_inf is not None else None
    priors = list(snakemake.input.prior) or [None] * len(p.widths)
    out = []
    for width, path, net_path, prior_path in zip(p.widths, snakemake.input.entk, snakemake.input.network, priors):
        K = io.load_npy(path, mmap=True)
        prior = None if prior_path is None else io.load_npy(prior_path)
        z = io.load_npz(net_path, keys=("pred", "method"))
        net_pred = z["pred"][list(z["method"]).index("network")]
        pred = kernel_predictions(K, prior)
        values = {"prediction_distance_entk_init": float(np.linalg.norm(net_pred - pred) / np.linalg.norm(pred))}
        if K_inf is not None:
            values["prediction_distance_infinite_ntk"] = float(np.linalg.norm(net_pred - pred_inf)
                                                               / np.linalg.norm(pred_inf))
            Kp = np.asarray(K[np.ix_(probe, probe)], dtype=np.float64)
            values["relative_distance_infinite"] = evolution.relative_distance(Kp, ref)
            values["kernel_distance_infinite"] = evolution.kernel_distance(Kp, ref)
        for metric, value in values.items():
            out.append(io.tidy_row(dataset=p.dataset, arch=p.arch, width=width, seed=snakemake.wildcards.seed,
                                   method="entk_init", kind="mean", n=n, k=0, metric=metric, value=value))
        print(f"width {width}: " + " ".join(f"{m}={v:.4g}" for m, v in values.items()), flush=True)
    io.write_rows(snakemake.output[0], out)
