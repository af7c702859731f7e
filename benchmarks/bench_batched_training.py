"""Training several small networks in one process at once (issue: train faster, so that the answer fits):
the networks of one seed at several n (one initialization, nested subsets, the same step budget) trained
together with torch.func (stacked parameters, vmap over networks, one optimizer over the stacks) against
training them one after another with the plain loop of bench_lightning.py. Both sides do the same
arithmetic per network: the same batches, SGD with momentum, the cosine schedule with warm-up. Reports
training steps per CPU-second of each side and their ratio, and the largest difference of the trained
networks' predictions (float32 rounding: vmap's batched matmuls sum in another order).

    python benchmarks/bench_batched_training.py [--width 64] [--ns 64 128 256 512 1024] [--steps 400]

One thread, as a workflow job on a 2-core machine runs. The Lightning path costs about 2.3x the plain loop
per step (bench_lightning.py), so the ratio here is a lower bound on the gain over today's jobs.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state

from bench_training import prepared_digits
from ntkscaling import data, files, training
from ntkscaling.analysis.losses import per_point_loss
from ntkscaling.nets import models


def subsets(prepared, order, ns):
    d = data.load_prepared(prepared)
    idx = files.load_npy(order)
    x, y = torch.as_tensor(d["x_train"][idx[:max(ns)]]), torch.as_tensor(d["y_train"][idx[:max(ns)]])
    return x, y, int(d["n_classes"])


def batch_plan(ns, steps, batch_size, seed):
    """Each network's batch indices at every step: a fresh permutation of its n examples every epoch."""
    plans = []
    for i, n in enumerate(ns):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        rows = []
        while len(rows) < steps:
            rows.extend(torch.randperm(n, generator=g).split(batch_size))
        plans.append(torch.stack([r for r in rows[:steps] if len(r) == batch_size]))
    return plans


def one_after_another(x, y, classes, ns, plans, width, steps, lr):
    preds = []
    for n, plan in zip(ns, plans):
        net = models.build("mlp", width, tuple(x.shape[1:]), classes, depth=2, seed=0)
        with torch.no_grad():
            f0 = net(x)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: training.lr_factor(s, steps, "cosine", 0.05))
        for b in plan:
            loss = per_point_loss(net(x[b]) - f0[b], y[b], "mse").mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            preds.append(net(x) - f0)
    return torch.stack(preds)


def all_at_once(x, y, classes, ns, plans, width, steps, lr):
    nets = [models.build("mlp", width, tuple(x.shape[1:]), classes, depth=2, seed=0) for _ in ns]
    params, buffers = stack_module_state(nets)
    base = nets[0]

    def forward(p, b, xs):
        return functional_call(base, (p, b), (xs,))

    batched = torch.vmap(forward)
    with torch.no_grad():
        f0 = batched(params, buffers, x.expand(len(ns), *x.shape))
    leaves = [p.requires_grad_() for p in params.values()]
    opt = torch.optim.SGD(leaves, lr=lr, momentum=0.9)  # elementwise: the same as one optimizer per network
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: training.lr_factor(s, steps, "cosine", 0.05))
    plan = torch.stack(plans, dim=1)  # (steps, networks, batch)
    net_index = torch.arange(len(ns))[:, None]
    for b in plan:
        out = batched(params, buffers, x[b]) - f0[net_index, b]
        loss = per_point_loss(out.reshape(-1, classes), y[b].reshape(-1), "mse").reshape(len(ns), -1).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return batched(params, buffers, x.expand(len(ns), *x.shape)) - f0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--ns", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        x, y, classes = subsets(*prepared_digits(Path(tmp)), args.ns)
    plans = batch_plan(args.ns, args.steps, args.batch_size, seed=0)
    steps = sum(len(p) for p in plans)
    times = {"one after another": [], "all at once": []}
    for _ in range(args.repeats):  # alternating: machine drift biases neither side
        for name, fn in (("one after another", one_after_another), ("all at once", all_at_once)):
            t0 = time.process_time()
            preds = fn(x, y, classes, args.ns, plans, args.width, args.steps, 1.0)
            times[name].append(time.process_time() - t0)
            if name == "one after another":
                reference = preds
            else:
                diff = float((preds - reference).abs().max() / reference.abs().max())
    rate = {name: steps / min(t) for name, t in times.items()}
    print(f"MLP 2x{args.width}, {len(args.ns)} networks (n = {args.ns}), {args.steps} steps each, batch "
          f"{args.batch_size}, 1 thread: one after another {rate['one after another']:.0f} steps/CPU-s, all at once "
          f"{rate['all at once']:.0f} steps/CPU-s ({rate['all at once'] / rate['one after another']:.2f}x); "
          f"largest relative prediction difference {diff:.2g}")


if __name__ == "__main__":
    main()
