"""Adapter: the sweep figure (each method's exponent against each swept setting)."""
import pandas as pd

from ntkscaling import jobs, plotting

with jobs.job(snakemake):
    p = snakemake.params
    table = pd.read_csv(snakemake.input.table, dtype={"ridge": str, "kind": str}, keep_default_na=False,
                        na_values={c: ["", "nan"] for c in ("alpha", "alpha_lo", "alpha_hi", "width", "alpha_deficit",
                                                           "deficit_lo", "deficit_hi")})
    fig = plotting.plot_sweep(table, p.swept, p.metrics, p.title, ridge=p.ridge, width=p.width)
    plotting.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
