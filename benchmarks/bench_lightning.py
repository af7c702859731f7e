"""Where a training job's time goes: the workflow's Lightning path (`training.train_network`, no evaluations,
no checkpoints beyond its first and last) against a plain PyTorch loop of the same steps on the same centred
network, batches, optimizer and schedule; plus the job's start-up (importing the training module). Same run,
alternating, so machine drift biases neither side. The default run trains 63 such networks (1600 steps each).

    python benchmarks/bench_lightning.py [--width 1024] [--n 1024] [--steps 1600] [--repeats 2]
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_training import prepared_digits, training_arguments  # the same options and data
from ntkscaling import data, files, training
from ntkscaling.nets import models
from ntkscaling.analysis.losses import per_point_loss


def plain_loop(prepared, order, n, width, steps, batch_size, lr, seed=0):
    """The same training as train_network's, written as a bare loop (centred MLP, SGD with momentum, cosine
    schedule with warmup, a fresh permutation of the n examples every epoch)."""
    d = data.load_prepared(prepared)
    idx = files.load_npy(order)[:n]
    x, y = torch.as_tensor(d["x_train"][idx]), torch.as_tensor(d["y_train"][idx])
    net = models.build("mlp", width, tuple(x.shape[1:]), int(d["n_classes"]), depth=2, seed=seed)
    with torch.no_grad():
        f0 = net(x)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: training.lr_factor(s, steps, "cosine", 0.05))
    g = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        for b in torch.randperm(n, generator=g).split(batch_size):
            loss = per_point_loss(net(x[b]) - f0[b], y[b], "mse").mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
    return float(loss)


def import_seconds(module: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - t0


def main():
    args = training_arguments(__doc__)
    times = {"lightning": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared_digits(tmp)
        for r in range(args.repeats):
            t0 = time.perf_counter()
            training.train_network(
                tmp / "prepared.npz", tmp / "order.npy", n=args.n, seed=0, out_dir=tmp / f"run{r}",
                network=training.NetworkSettings("mlp", args.width, depth=2),
                train=training.TrainSettings(lr=3.0, batch_size=64, steps=args.steps, lr_schedule="cosine",
                                             warmup=0.05),
                progress=False, resume=False)
            times["lightning"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            plain_loop(tmp / "prepared.npz", tmp / "order.npy", args.n, args.width, args.steps, 64, 3.0)
            times["plain"].append(time.perf_counter() - t0)
    light, plain = min(times["lightning"]), min(times["plain"])
    start = min(import_seconds("ntkscaling.training.run") for _ in range(2))
    print(f"MLP 2x{args.width}, n={args.n}, {args.steps} steps, 1 thread: Lightning path {light:.1f} s, plain loop "
          f"{plain:.1f} s ({light / plain:.2f}x); a training job's imports {start:.1f} s")


if __name__ == "__main__":
    main()
