"""Adapter: eNTK of a checkpoint on the kernel rows (n_max nested train points, validation, test, pool), saved as
.npy + JSON, with the checkpoint network's own outputs on the same rows (the f0 of the linearized
predictor that uncentred networks are compared with)."""
import time

import numpy as np
import torch

from ntkscaling import data, files, jobs
from ntkscaling.kernels.empirical import api as entk
from ntkscaling.pipeline import tags as methods
from ntkscaling.nets import models

with jobs.job(snakemake):
    torch.set_num_threads(snakemake.threads)
    w = snakemake.wildcards
    tag = methods.parse_tag(w.method)
    d = data.load_prepared(snakemake.input.data)
    order = files.load_npy(snakemake.input.order)
    n_max, pool = snakemake.params.n_max, snakemake.params.pool
    x = torch.from_numpy(data.kernel_rows(d, order, n_max, pool)[0])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"eNTK ({w.kind}) of {snakemake.input.ckpt} on {len(x)} points, device {device}", flush=True)
    t0 = time.perf_counter()
    budget = entk.memory_budget_gb(snakemake.resources.get("mem_mb"), device)
    print(f"feature memory budget {budget:.1f} GB", flush=True)
    net = models.load_network(snakemake.input.ckpt, map_location=device).to(device)
    engine = entk.engine(net)
    print(f"engine {engine} ({type(net).__name__}, {sum(p.numel() for p in net.parameters())} parameters)",
          flush=True)
    K = entk.empirical_ntk(net, x, kind=w.kind, max_memory_gb=budget, progress=lambda msg: print(msg, flush=True))
    K = K.cpu().numpy()
    if not np.all(np.isfinite(K)):
        raise FloatingPointError(f"eNTK of {snakemake.input.ckpt} contains NaN or inf")
    seconds = time.perf_counter() - t0
    outputs = models.network_outputs(net, x)  # the network read once, for its kernel and its outputs
    files.save_npy(snakemake.output.kernel, K)
    files.save_npy(snakemake.output.outputs, outputs)
    files.save_json(snakemake.output.meta, {
        "tag": w.method, "method": tag["method"], "k": tag["k"], "kind": w.kind, "width": int(w.width), "seed": int(w.seed),
        "checkpoint": snakemake.input.ckpt, "n_train": n_max, "n_val": int(len(d["x_val"])),
        "n_test": int(len(d["x_test"])), "n_pool": data.pool_size(order, n_max, pool),
        "rows": data.KERNEL_ROWS_DESCRIPTION,
        "outputs": "the checkpoint network's uncentred outputs f(x) on the same rows, float64",
        "shape": list(K.shape), "dtype": str(K.dtype), "device": device, "engine": engine, "seconds": seconds,
        "provenance": files.provenance(snakemake.config)})
    print(f"done in {seconds:.1f}s: {K.shape}")
