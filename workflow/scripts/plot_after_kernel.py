"""Adapter: the after-kernel figure (scaling curves and exponent vs pre-training size k)."""
import pandas as pd

from ntkscaling import jobs, plotting

with jobs.job(snakemake):
    p = snakemake.params
    fig = plotting.plot_after_kernel(pd.read_csv(snakemake.input.metrics), pd.read_csv(snakemake.input.exponents),
                                     p.metrics, p.title, ridge=p.ridge, width=p.width)
    plotting.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
