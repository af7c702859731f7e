"""Adapter: the one-table answer - every method's exponent beside the network's (see scaling.summarize)."""
from ntkscaling import files, jobs
from ntkscaling.analysis import scaling

with jobs.job(snakemake):
    summary = scaling.summarize(scaling.read_exponents(snakemake.input.exponents), snakemake.params.ridge,
                                scaling.read_metrics(snakemake.input.metrics))
    with files.atomic_path(snakemake.output.table) as tmp:
        summary.to_csv(tmp, index=False)
    files.save_json(snakemake.output.provenance, files.provenance(snakemake.config))
    print(summary.to_string(index=False))
