"""Adapter: the kernel-evolution figure from the collected evolution table."""
import pandas as pd

from ntkscaling import jobs, plotting

with jobs.job(snakemake):
    p = snakemake.params
    fig = plotting.plot_kernel_evolution(pd.read_csv(snakemake.input.evolution), p.title, p.ridge, p.metric)
    plotting.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
