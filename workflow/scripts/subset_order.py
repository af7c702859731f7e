"""Adapter: the nested-subset permutation of one seed (see ntkscaling.data.nested_order). It orders the whole
training pool, so adding a larger n never changes it (the config check has already compared n with the pool)."""
from ntkscaling import data, files, jobs

with jobs.job(snakemake):
    d = data.load_prepared(snakemake.input.data)
    order = data.nested_order(d["y_train"], int(snakemake.wildcards.seed), snakemake.params.balanced)
    files.save_npy(snakemake.output[0], order)
