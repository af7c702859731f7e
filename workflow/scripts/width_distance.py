"""Adapter: width scaling per seed (evolution.width_distances for each width: the eNTK at init against the
infinite NTK, each trained network's test predictions against kernel regression with either, and against its
own linearization trained the same way: the lazy-limit diagnostic)."""
import numpy as np

from ntkscaling import data, files, jobs
from ntkscaling.analysis import evolution

with jobs.job(snakemake):
    p = snakemake.params
    d = data.load_prepared(snakemake.input.data)
    y = data.kernel_rows(d, files.load_npy(snakemake.input.order), p.n_max)[1]
    blocks, n_classes = data.row_blocks(p.n_max, d), int(d["n_classes"])
    K_inf = files.load_npy(snakemake.input.infinite[0], mmap=True) if snakemake.input.infinite else None
    test = np.arange(blocks["test"].start, blocks["test"].stop)
    pred_inf = None if K_inf is None else evolution.ridgeless_test_predictions(K_inf, y, p.n, test, n_classes)
    priors = list(snakemake.input.prior) or [None] * len(p.widths)
    linearized = list(snakemake.input.linearized) or [None] * len(p.widths)
    out = []
    for width, path, net_path, prior_path, lin_path in zip(p.widths, snakemake.input.entk, snakemake.input.network,
                                                           priors, linearized):
        z = files.load_npz(net_path, keys=("pred", "method"))
        pred_lin = None
        if lin_path is not None:  # the linearized network at the same n and step (its last)
            lin = files.load_npz(lin_path, keys=("pred_last", "n"))
            pred_lin = lin["pred_last"][list(lin["n"]).index(p.n)]
        values = evolution.width_distances(
            files.load_npy(path, mmap=True), z["pred"][list(z["method"]).index("network")], y, p.n, blocks, n_classes,
            p.probe, K_inf, pred_inf, prior=None if prior_path is None else files.load_npy(prior_path),
            linearized_pred=pred_lin)
        for metric, value in values.items():
            out.append(files.tidy_row(dataset=p.dataset, arch=p.arch, width=width, seed=snakemake.wildcards.seed,
                                   method="entk_init", kind="mean", n=p.n, k=0, metric=metric, value=value))
        print(f"width {width}: " + " ".join(f"{m}={v:.4g}" for m, v in values.items()), flush=True)
    files.write_rows(snakemake.output[0], out)
