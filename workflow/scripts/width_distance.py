"""Adapter: how far the eNTK at init of each width is from the infinite NTK (on a probe block of rows)."""
import numpy as np

from ntkscaling import evolution, io

with io.log_to(snakemake.log[0]):
    p = snakemake.params
    n_max = p.n_max
    K_inf = np.load(snakemake.input.infinite, mmap_mode="r")
    rows = np.r_[0:min(p.probe, n_max), n_max:len(K_inf)]  # probe train rows, then the test set
    ref = np.asarray(K_inf[np.ix_(rows, rows)], dtype=np.float64)
    out = []
    for width, path in zip(p.widths, snakemake.input.entk):
        K = np.asarray(np.load(path, mmap_mode="r")[np.ix_(rows, rows)], dtype=np.float64)
        values = {"relative_distance_infinite": evolution.relative_distance(K, ref),
                  "kernel_distance_infinite": evolution.kernel_distance(K, ref)}
        for metric, value in values.items():
            out.append({"dataset": p.dataset, "arch": p.arch, "width": width, "seed": snakemake.wildcards.seed,
                        "method": "entk_init", "kind": "mean", "n": n_max, "k": 0, "epoch": 0, "step": 0,
                        "metric": metric, "value": value})
        print(f"width {width}: " + " ".join(f"{m}={v:.4g}" for m, v in values.items()), flush=True)
    io.write_rows(snakemake.output[0], out)
