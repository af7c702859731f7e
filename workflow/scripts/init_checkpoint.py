"""Adapter: the untrained network of (width, seed) as a checkpoint, for the eNTK at initialization."""
from ntkscaling import data, io, training

with io.log_to(snakemake.log[0]):
    d = data.load_prepared(snakemake.input.data)
    m = snakemake.params.network
    training.save_init_checkpoint(
        snakemake.output[0], d["x_train"].shape[1:], int(d["n_classes"]), int(snakemake.wildcards.seed),
        arch=m["arch"], width=int(snakemake.wildcards.width), depth=m["depth"],
        parameterization=m["parameterization"], W_std=m["W_std"], b_std=m["b_std"], center=m["center"])
