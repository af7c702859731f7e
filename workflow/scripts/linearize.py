"""Adapter: the linearized network (ntkscaling.training.linearized) on every nested n of a seed, trained by the
network's own optimizer, batches and schedule in function space with the eNTK at initialization; per-point
records as the network's (method `linearized`, the best-validation state) and tidy test and validation rows."""
import numpy as np

from ntkscaling import data, files, jobs, training
from ntkscaling.training import linearized

with jobs.job(snakemake):
    w, p = snakemake.wildcards, snakemake.params
    d = data.load_prepared(snakemake.input.data)
    order = files.load_npy(snakemake.input.order)
    K = files.load_npy(snakemake.input.kernel, mmap=True)
    y_all, rows = data.labelled_rows(d, order, max(p.ns), p.pool)
    prior = files.load_npy(snakemake.input.prior[0]) if snakemake.input.prior else None
    train = training.TrainSettings.from_config(p.train, p.select_by)
    ident = {"dataset": p.dataset, "arch": p.arch, "width": files.table_width(w.width), "seed": int(w.seed),
             "method": "linearized", "kind": w.kind, "k": 0}
    records, table = [], []
    for n in sorted(p.ns):
        rec = linearized.train_linearized(K, y_all, n, rows, int(w.seed), train, int(d["n_classes"]), prior)
        records.append((n, rec))
        for metric in ("error", "mse"):
            table.append(files.tidy_row(**ident, n=n, step=rec["step"], metric=f"test_{metric}",
                                        value=float(rec[metric].mean())))
            table.append(files.tidy_row(**ident, n=n, step=rec["step"], metric=f"val_{metric}",
                                        value=rec[f"val_{metric}"]))
        print(f"n={n} best step {rec['step']}: val_mse={rec['val_mse']:.4g} test_error={rec['error'].mean():.4f} "
              f"test_mse={rec['mse'].mean():.4g}", flush=True)
    files.write_rows(snakemake.output.metrics, table)
    files.save_npz(snakemake.output.pointwise, **ident, n=np.array([n for n, _ in records]),
                   **{key: np.stack([np.asarray(r[key]) for _, r in records])
                      for key in ("loss", "mse", "error", "pred", "pred_last", "step", *training.VALIDATION_KEYS)})
