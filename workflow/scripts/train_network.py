"""Adapter: train one network on nested subset n (see ntkscaling.training.train_network). Used by
train_network and by track_network (the same run with the kernel evolution's checkpoint schedule). With
train.on_divergence: record (a sweep's grid points), a diverging network is recorded, not a failed job."""
import shutil

import numpy as np
import torch

from ntkscaling import data, files, jobs, training
from ntkscaling.nets import models


def record_divergence(err, meta):
    """The job's outputs for a diverged network: the metrics measured before it and a 'diverged' row, NaN
    test predictions, and a final checkpoint that holds no network (models.save_diverged)."""
    print(f"recorded, not failed (train.on_divergence: record): {err}", flush=True)
    rows = err.rows + [files.tidy_row(**meta, method="network", epoch=err.epoch, step=err.step, metric=files.DIVERGED,
                                   value=1.0)]
    d = data.load_prepared(snakemake.input.data)
    nan = np.full((2, len(d["y_test"])), np.nan)
    files.save_npz(snakemake.output.pointwise, **meta, method=np.array(["network", "network_best"]), loss=nan, mse=nan,
                error=nan, pred=np.full(nan.shape + (int(d["n_classes"]),), np.nan), step=np.array([err.step] * 2),
                **{key: np.full(2, np.nan) for key in training.VALIDATION_KEYS})
    files.write_rows(snakemake.output.metrics, rows)
    models.save_diverged(snakemake.output.final, str(err))


with jobs.job(snakemake):
    torch.set_num_threads(snakemake.threads)
    w, p = snakemake.wildcards, snakemake.params
    n = int(w.n)
    network = training.NetworkSettings.from_config(p.network, w.width)
    meta = {"dataset": p.dataset, "arch": network.arch, "width": network.width, "seed": int(w.seed), "n": n, "k": n}
    try:
        rows, records, saved = training.train_network(
            snakemake.input.data, snakemake.input.order, n, int(w.seed), p.checkpoints, network,
            training.TrainSettings.from_config(p.train, p.select_by), log_points=p.schedule["log_checkpoints"],
            checkpoint_epochs=p.schedule["checkpoint_epochs"], dataset=p.dataset, live_csv=snakemake.log.live,
            velocity_gap=p.schedule.get("velocity_gap", 0.0))
    except training.DivergenceError as err:
        if p.train.get("on_divergence", "fail") != "record":
            raise
        record_divergence(err, meta)
    else:
        with files.atomic_path(snakemake.output.final) as tmp:
            shutil.copyfile(saved[max(saved)], tmp)
        methods = list(records)  # network (last step), network_best (best validation evaluation)
        files.save_npz(snakemake.output.pointwise, **meta, method=np.array(methods),
                    **{key: np.stack([records[mt][key] for mt in methods])
                       for key in ("loss", "mse", "error", "pred", "step", *training.VALIDATION_KEYS)})
        files.write_rows(snakemake.output.metrics, rows)
        print(f"done: n={n} steps={max(saved)}")
        for method, rec in records.items():
            final = {r["metric"]: r["value"] for r in rows if r["step"] == rec["step"] and r["method"] == method}
            print(f"  {method} (step {rec['step']}): " + " ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())))
