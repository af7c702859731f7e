"""Adapter: the untrained network of (width, seed) as a checkpoint, for the eNTK at initialization."""
from ntkscaling import data, jobs, training

with jobs.job(snakemake):
    d = data.load_prepared(snakemake.input.data)
    training.save_init_checkpoint(
        snakemake.output[0], d["x_train"].shape[1:], int(d["n_classes"]), int(snakemake.wildcards.seed),
        training.NetworkSettings.from_config(snakemake.params.network, snakemake.wildcards.width))
