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

from ntkscaling import data, io, training


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as a workflow training job
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        d = data.prepare("digits", test_size=500, val_size=250)
        io.save_npz(tmp / "prepared.npz", **d)
        io.save_npy(tmp / "order.npy", data.nested_order(d["y_train"], 0))
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
