"""Adapter: the nested-subset permutation of one seed (see ntkscaling.data.nested_order)."""
from ntkscaling import data, io

with io.log_to(snakemake.log[0]):
    d = data.load_prepared(snakemake.input.data)
    pool = len(d["y_train"])
    if snakemake.params.max_n > pool:
        raise data.DatasetError(f"config key 'sample_sizes': largest n={snakemake.params.max_n} exceeds the "
                                f"training pool of {pool} examples")
    order = data.nested_order(d["y_train"], int(snakemake.wildcards.seed), snakemake.params.balanced)
    io.save_npy(snakemake.output[0], order)
