"""Adapter: the eNTK at every checkpoint of one training run and its evolution metrics (tidy rows)."""
import csv

import numpy as np
import torch

from ntkscaling import data, files, jobs, training
from ntkscaling.kernels.empirical import api as entk
from ntkscaling.analysis import evolution, theory
from ntkscaling.nets import models

with jobs.job(snakemake):
    torch.set_num_threads(snakemake.threads)
    w = snakemake.wildcards
    n = int(w.n)
    d = data.load_prepared(snakemake.input.data)
    order = files.load_npy(snakemake.input.order)
    x, y = data.kernel_rows(d, order, n)
    x = torch.from_numpy(x)
    with open(snakemake.input.metrics, newline="") as f:
        network = [r for r in csv.DictReader(f) if r["metric"] in ("test_error", "test_mse")
                   and r["method"] == "network"]
    ident = {k: network[0][k] for k in ("dataset", "arch", "width", "seed")}
    checkpoints = training.run_checkpoints(network, snakemake.input.final, snakemake.params.checkpoints)
    files.verify_inputs([c["path"] for c in checkpoints])  # the tracked run's checkpoints, not declared inputs
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = {}

    def network_of(ckpt):
        """Each checkpoint's network read once for its kernel and its outputs (the final one, which the
        evolution needs first and last, is kept throughout)."""
        path = str(ckpt["path"])
        if path not in loaded:
            for old in [p for p in loaded if p != str(checkpoints[-1]["path"])]:
                del loaded[old]
            loaded[path] = models.load_network(path, map_location=device).to(device)
        return loaded[path]
    print(f"eNTK ({w.kind}) of {len(checkpoints)} checkpoints on {len(x)} points, device {device}, engine "
          f"{entk.engine(network_of(checkpoints[-1]))}", flush=True)

    budget = entk.memory_budget_gb(snakemake.resources.get("mem_mb"), device)

    def outputs_of(ckpt):
        return models.network_outputs(network_of(ckpt), x)

    def kernel_of(ckpt):
        return entk.empirical_ntk(network_of(ckpt), x, kind=w.kind, max_memory_gb=budget).cpu().numpy()

    print("predictor: " + ("linearized (f0 of each checkpoint + kernel regression on Y - f0)"
                           if snakemake.params.linearized else "kernel regression"), flush=True)
    blocks, settings = data.row_blocks(n, d), snakemake.params.theory
    spectrum_rows = theory.spectrum_rows(blocks, settings["max_rows"], trained_on=n)  # rows it never trains on
    targets = np.eye(int(d["n_classes"]))[y]

    def spectral(K):  # the spectrum's decay and label alignment at each checkpoint (mean and sum kinds)
        return theory.spectral_summary(K, targets, spectrum_rows, (settings["mode_min"], settings["mode_max"]),
                                       settings["top_k"]) if K.ndim == 2 else {}

    hparams = models.load_checkpoint(snakemake.input.final)["hyper_parameters"]  # the run's own budget and schedule
    total, train = int(hparams["total_steps"]), hparams["train"]
    gap = training.velocity_gap_steps(total, snakemake.params.velocity_gap) if snakemake.params.velocity_gap else None

    def lr_at(step):
        return train["lr"] * training.lr_factor(step, total, train["lr_schedule"], train["warmup"])

    rows = evolution.track(checkpoints, kernel_of, y, blocks, int(d["n_classes"]),
                           snakemake.params.ridges, progress=lambda msg: print(msg, flush=True),
                           prior_of=outputs_of if snakemake.params.linearized else None, spectral=spectral,
                           gap=gap, lr_at=lr_at)
    out = [files.tidy_row(**ident, method="entk_checkpoint", kind=w.kind, n=n, k=n, **r) for r in rows]
    out += [files.tidy_row(**r) for r in network]  # the network's own rows, as training wrote them
    files.write_rows(snakemake.output[0], out)
