"""Adapter: kernel ridge regression for every nested n and ridge on slices of one kernel."""
import numpy as np

from ntkscaling import data, io, methods, regression

with io.log_to(snakemake.log[0]):
    w, p = snakemake.wildcards, snakemake.params
    d = data.load_prepared(snakemake.input.data)
    order = np.load(snakemake.input.order, allow_pickle=False)
    K = np.load(snakemake.input.kernel, mmap_mode="r")
    n_max = max(p.ns)
    y_all = data.kernel_rows(d, order, n_max)[1]
    tag = methods.parse_tag(w.method)
    ident = {"dataset": p.dataset, "arch": p.arch, "width": float("inf") if w.width == "inf" else int(w.width),
             "seed": int(w.seed), "method": tag["method"], "kind": w.kind, "k": tag["k"] or 0}
    rows, records = [], []
    for n, res in regression.nested_regression(K, y_all, n_max, p.ns, int(d["n_classes"]), p.ridges):
        for metric in ("error", "mse"):
            rows.append({**ident, "ridge": res["ridge"], "n": n, "epoch": 0, "step": 0,
                         "metric": f"test_{metric}", "value": float(res[metric].mean())})
        rows.append({**ident, "ridge": res["ridge"], "n": n, "epoch": 0, "step": 0, "metric": "jitter",
                     "value": res["jitter"]})
        records.append((n, res))
        print(f"n={n} ridge={res['ridge']:g} jitter={res['jitter']:g} test_error={res['error'].mean():.4f} "
              f"test_mse={res['mse'].mean():.4g}", flush=True)
    io.write_rows(snakemake.output.metrics, rows)
    io.save_npz(snakemake.output.pointwise, **ident, n=np.array([n for n, _ in records]), ridge=np.array([r["ridge"] for _, r in records]),
                error=np.stack([r["error"] for _, r in records]), mse=np.stack([r["mse"] for _, r in records]))
