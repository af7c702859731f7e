"""Adapter: train one network on nested subset n (see ntkscaling.training.train_network)."""
import shutil

import torch

from ntkscaling import io, training

with io.log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    w = snakemake.wildcards
    m, t = snakemake.params.model, snakemake.params.train
    n = int(w.n)
    rows, pointwise, saved = training.train_network(
        snakemake.input.data, snakemake.input.order, n, int(w.seed), snakemake.params.checkpoints,
        arch=m["arch"], width=int(w.width), depth=m["depth"], parameterization=m["parameterization"],
        W_std=m["W_std"], b_std=m["b_std"], loss=t["loss"], optimizer=t["optimizer"], lr=t["lr"],
        momentum=t["momentum"], weight_decay=t["weight_decay"], batch_size=min(t["batch_size"], n),
        epochs=t["epochs"], steps=t["steps"], log_points=snakemake.params.schedule["log_points"],
        checkpoint_epochs=snakemake.params.schedule["epochs"], dataset=snakemake.params.dataset)
    with io.atomic_path(snakemake.output.final) as tmp:
        shutil.copyfile(saved[max(saved)], tmp)
    meta = {"dataset": snakemake.params.dataset, "arch": m["arch"], "width": int(w.width), "seed": int(w.seed),
            "method": "network", "n": n, "k": n}
    io.save_npz(snakemake.output.pointwise, **pointwise, **meta)
    io.write_rows(snakemake.output.metrics, rows)
    final = {r["metric"]: r["value"] for r in rows if r["step"] == max(saved)}
    print(f"done: n={n} steps={max(saved)} " + " ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())))
