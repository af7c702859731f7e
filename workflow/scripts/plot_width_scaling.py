"""Adapter: the width-scaling figure (metric and exponent vs width, distance to the infinite NTK)."""
import pandas as pd

from ntkscaling import jobs, plotting

with jobs.job(snakemake):
    p = snakemake.params
    fig = plotting.plot_width_scaling(pd.read_csv(snakemake.input.metrics), pd.read_csv(snakemake.input.exponents),
                                      pd.read_csv(snakemake.input.distance), p.metrics, p.title, p.ridge, p.n)
    plotting.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
