"""Training time of a centred network: f0 (the frozen initial network's outputs on the training points)
computed once per run and fed with each batch, against a second forward pass through the frozen copy at every
step (the plain definition, `cache_f0=False`). Same run, alternating, so machine drift biases neither side.

    python benchmarks/bench_training.py [--width 1024] [--n 1024] [--steps 1600] [--repeats 2]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ntkscaling import data, files, training


def training_arguments(doc: str):
    """The training benchmarks' options (width, n, steps, repeats), on one thread as a workflow job."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--repeats", type=int, default=2)
    torch.set_num_threads(1)
    return ap.parse_args()


def prepared_digits(folder: Path):
    """The default run's data in `folder`: digits prepared and seed 0's nested order (prepared.npz, order.npy)."""
    d = data.prepare("digits", test_size=500, val_size=250)
    files.save_npz(folder / "prepared.npz", **d)
    files.save_npy(folder / "order.npy", data.nested_order(d["y_train"], 0))
    return folder / "prepared.npz", folder / "order.npy"


def main():
    args = training_arguments(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared_digits(tmp)
        times = {True: [], False: []}
        preds = {}
        for _ in range(args.repeats):
            for cache in (True, False):
                t0 = time.perf_counter()
                _, records, _ = training.train_network(
                    tmp / "prepared.npz", tmp / "order.npy", n=args.n, seed=0, out_dir=tmp / f"run{cache}",
                    network=training.NetworkSettings("mlp", args.width, depth=2),
                    train=training.TrainSettings(lr=3.0, batch_size=64, steps=args.steps, lr_schedule="cosine",
                                                 warmup=0.05),
                    progress=False, resume=False, cache_f0=cache)
                times[cache].append(time.perf_counter() - t0)
                preds[cache] = records["network"]["pred"]
    cached, plain = np.mean(times[True]), np.mean(times[False])
    diff = float(np.abs(preds[True] - preds[False]).max())
    print(f"MLP 2x{args.width}, n={args.n}, {args.steps} steps, centred: f0 once {cached:.1f} s, "
          f"f0 every step {plain:.1f} s: {plain / cached:.2f}x; max prediction difference {diff:.2g}")


if __name__ == "__main__":
    main()
