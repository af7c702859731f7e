"""Adapter: train one network on nested subset n (see ntkscaling.training.train_network). Used by
train_network and by track_network (the same run with the kernel evolution's checkpoint schedule)."""
import shutil

import numpy as np
import torch

from ntkscaling import io, training

with io.log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    w, p = snakemake.wildcards, snakemake.params
    n = int(w.n)
    network = training.NetworkSettings.from_config(p.network, w.width)
    rows, records, saved = training.train_network(
        snakemake.input.data, snakemake.input.order, n, int(w.seed), p.checkpoints, network,
        training.TrainSettings.from_config(p.train, p.select_by), log_points=p.schedule["log_checkpoints"],
        checkpoint_epochs=p.schedule["checkpoint_epochs"], dataset=p.dataset)
    with io.atomic_path(snakemake.output.final) as tmp:
        shutil.copyfile(saved[max(saved)], tmp)
    methods = list(records)  # network (last step), network_best (best validation evaluation)
    meta = {"dataset": p.dataset, "arch": network.arch, "width": network.width, "seed": int(w.seed), "n": n, "k": n}
    io.save_npz(snakemake.output.pointwise, **meta, method=np.array(methods),
                **{key: np.stack([records[mt][key] for mt in methods]) for key in ("loss", "mse", "error", "pred",
                                                                                 "step")})
    io.write_rows(snakemake.output.metrics, rows)
    print(f"done: n={n} steps={max(saved)}")
    for method, rec in records.items():
        final = {r["metric"]: r["value"] for r in rows if r["step"] == rec["step"] and r["method"] == method}
        print(f"  {method} (step {rec['step']}): " + " ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())))
