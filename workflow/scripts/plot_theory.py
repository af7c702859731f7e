"""Adapter: the theory figure (each kernel's measured test MSE beside what its spectrum predicts)."""
from ntkscaling import jobs, plotting
from ntkscaling.analysis import scaling

with jobs.job(snakemake):
    p = snakemake.params
    fig = plotting.plot_theory(scaling.read_metrics(snakemake.input.metrics),
                               scaling.read_exponents(snakemake.input.summary), p.title, ridge=p.ridge, width=p.width)
    plotting.save_figure(fig, snakemake.output.pdf, snakemake.output.png)
