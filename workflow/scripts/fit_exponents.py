"""Adapter: fit metric = a * n^-alpha per curve (method, width, k) with calibrated intervals, each over the n
where it and its reference network have learned (the data's class count gives the zero function's score)."""
import json

from ntkscaling import files, jobs
from ntkscaling.analysis import scaling

with jobs.job(snakemake):
    with open(snakemake.input.data_meta) as f:
        n_classes = int(json.load(f)["n_classes"])
    rows = scaling.fit_curves(snakemake.input.pointwise, snakemake.params.fit, n_classes=n_classes)
    files.write_rows(snakemake.output[0], rows, columns=scaling.EXPONENT_COLUMNS)
    for r in rows:
        print(f"{r['method']:>12} w={r['width']} k={r['k']} {r['metric']}: alpha={r['alpha']:.3f} "
              f"[{r['alpha_lo']:.3f}, {r['alpha_hi']:.3f}] over n {r['n_min']:g}..{r['n_max']:g}"
              + (f"; not learned at n = {r['unlearned_n']}" if r["unlearned_n"] else ""))
