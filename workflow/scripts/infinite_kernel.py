"""Adapter: infinite-width NTK and NNGP on the kernel rows (n_max nested train points, validation, test, pool),
float64."""
import time

import numpy as np
import torch

from ntkscaling import data, files, jobs
from ntkscaling.kernels.infinite import api as infinite
from ntkscaling.nets import models

with jobs.job(snakemake):
    torch.set_num_threads(snakemake.threads)
    m = snakemake.params.arch
    d = data.load_prepared(snakemake.input.data)
    order = files.load_npy(snakemake.input.order)
    n_max, pool = snakemake.params.n_max, snakemake.params.pool
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(data.kernel_rows(d, order, n_max, pool)[0]).to(device)
    print(f"infinite {m['arch']} NTK/NNGP on {len(x)} points, device {device}", flush=True)
    t0 = time.perf_counter()
    progress = lambda msg: print(msg, flush=True)  # noqa: E731
    if m.get("factory"):  # a user's network made of ntkscaling layers: the walk over its layers
        net = models.network_from_factory(m["factory"], x.shape[1:], int(d["n_classes"]), m["width"], 0,
                                          **m["factory_kwargs"])
        kernel = infinite.infinite_kernels_of(models.infinite_layers(net), x, progress=progress)
    else:
        kernel = infinite.infinite_kernels(m["arch"], x.shape[1:], x, depth=m["depth"], W_std=m["W_std"],
                                           b_std=m["b_std"], progress=progress)
    ntk, nngp = kernel.ntk, kernel.nngp
    seconds = time.perf_counter() - t0
    for name, K in (("ntk", ntk), ("nngp", nngp)):
        K = K.cpu().numpy()
        if not np.all(np.isfinite(K)):
            raise FloatingPointError(f"infinite {name} contains NaN or inf")
        files.save_npy(snakemake.output[name], K)
    files.save_json(snakemake.output.meta, {
        **m,
        "n_train": n_max, "n_val": int(len(d["x_val"])), "n_test": int(len(d["x_test"])),
        "n_pool": data.pool_size(order, n_max, pool), "dtype": "float64", "device": device,
        "rows": data.KERNEL_ROWS_DESCRIPTION,
        "kernels": {"ntk": snakemake.output.ntk, "nngp": snakemake.output.nngp}, "seconds": seconds,
        "provenance": files.provenance(snakemake.config)})
    print(f"done in {seconds:.1f}s")
