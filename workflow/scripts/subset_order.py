"""Adapter: the nested-subset permutation of one seed (see ntkscaling.data.nested_order). It orders the whole
training pool, so adding a larger n never changes it (the config check has already compared n with the pool)."""
from ntkscaling import data, io

with io.job(snakemake):
    d = data.load_prepared(snakemake.input.data)
    order = data.nested_order(d["y_train"], int(snakemake.wildcards.seed), snakemake.params.balanced)
    io.save_npy(snakemake.output[0], order)
