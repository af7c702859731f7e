"""Adapter: kernel ridge regression for every nested n on slices of one kernel: each fixed ridge, and the
ridge chosen on the validation set (`tuned`). Uncentred networks are matched by the linearized predictor
(the checkpoint network's outputs as prior). Beside each measured curve, what the kernel's spectrum predicts
(ntkscaling.theory): spectrum.csv, and rows predicted_test_mse / predicted_train_mse per regression and the
spectrum's fitted exponents (n = the rows of the spectrum)."""
import numpy as np

from ntkscaling import data, files, jobs
from ntkscaling.pipeline import tags as methods
from ntkscaling.analysis import regression, theory

with jobs.job(snakemake):
    w, p = snakemake.wildcards, snakemake.params
    d = data.load_prepared(snakemake.input.data)
    order = files.load_npy(snakemake.input.order)
    K = files.load_npy(snakemake.input.kernel, mmap=True)
    y_all, blocks = data.labelled_rows(d, order, max(p.ns), p.pool)
    if K.shape[0] != len(y_all):
        raise ValueError(f"{snakemake.input.kernel}: {K.shape[0]} rows, expected {len(y_all)} (training, "
                         f"validation, test and pool rows)")
    prior = files.load_npy(snakemake.input.prior[0]) if snakemake.input.prior else None
    tag = methods.parse_tag(w.method)
    ident = {"dataset": p.dataset, "arch": p.arch, "width": files.table_width(w.width), "seed": int(w.seed),
             "method": tag["method"], "kind": w.kind, "k": tag["k"] or 0}
    print(f"predictor: {'linearized (f0 + kernel regression on Y - f0)' if prior is not None else 'kernel regression'};"
          f" ridge chosen on {blocks['val'].stop - blocks['val'].start} validation points by {p.select_by}",
          flush=True)
    rows, records = [], []
    results = regression.nested_regression(K, y_all, blocks, p.ns, int(d["n_classes"]), p.ridges, grid=p.ridge_grid,
                                           metric=p.select_by, prior=prior)
    for n, res in results:
        label = methods.TUNED if res["tuned"] else methods.ridge_label(res["ridge"])
        at = {**ident, "ridge": label, "n": n}
        for metric in ("error", "mse"):
            rows.append(files.tidy_row(**at, metric=f"test_{metric}", value=float(res[metric].mean())))
            rows.append(files.tidy_row(**at, metric=f"val_{metric}", value=float(res["val"][metric].mean())))
        rows.append(files.tidy_row(**at, metric="jitter", value=res["jitter"]))
        if res["tuned"]:
            rows.append(files.tidy_row(**at, metric="selected_ridge", value=res["ridge"]))
        records.append((n, label, res))
        print(f"n={n} ridge={label} ({res['ridge']:g}) jitter={res['jitter']:g} val_{p.select_by}="
              f"{res['val'][p.select_by].mean():.4g} test_error={res['error'].mean():.4f} "
              f"test_mse={res['mse'].mean():.4g}", flush=True)
    if K.ndim == 2:
        targets = np.eye(int(d["n_classes"]))[y_all] - (0.0 if prior is None else prior)  # as regressed
        spectrum, theory_rows = theory.regression_theory(K, targets, blocks, records, p.theory, ident)
        rows += theory_rows
    else:  # the full kind's (n C)^2 eigenproblem is out of reach at useful sizes
        print("theory: no spectrum for the full kind", flush=True)
        spectrum = []
    files.write_rows(snakemake.output.spectrum, spectrum, columns=theory.SPECTRUM_COLUMNS)
    files.write_rows(snakemake.output.metrics, rows)
    files.save_npz(snakemake.output.pointwise, **ident, n=np.array([n for n, _, _ in records]),
                ridge=np.array([label for _, label, _ in records]),
                error=np.stack([r["error"] for _, _, r in records]), mse=np.stack([r["mse"] for _, _, r in records]))
