"""Adapter: the one-table answer - every method's exponent beside the network's (see scaling.summarize)."""
from ntkscaling import io
from ntkscaling.analysis import scaling

with io.job(snakemake):
    summary = scaling.summarize(scaling.read_exponents(snakemake.input.exponents), snakemake.params.ridge,
                                scaling.read_metrics(snakemake.input.metrics))
    with io.atomic_path(snakemake.output.table) as tmp:
        summary.to_csv(tmp, index=False)
    io.save_json(snakemake.output.provenance, io.provenance(snakemake.config))
    print(summary.to_string(index=False))
