"""eNTK speed: the layerwise implementation against the torch.func jacrev+vmap reference, same run; and the
general engine (any torch module) against the same reference on the built-in ResNet.

Prints time and peak memory (RSS growth, or CUDA peak) for each, and their ratio. Usage:
    python benchmarks/bench_entk.py [--n 1024] [--myrtle-n 1024] [--resnet-n 512] [--skip-mlp] [--skip-myrtle]
                                    [--device cpu|cuda]
The reference holds every per-sample Jacobian at once: for the MLP at n=1024 that is 1024 x 10 x 563k
floats = 23 GB, more than a 24 GB machine can give, so `--n 512` is the largest size it completes here.
Targets (issue 3): MLP 3x512, 64 inputs, 10 logits, n=1024, mean kind: >= 100x faster;
Myrtle-5 width 64 on 32x32x3, n=1024, mean kind: >= 3x faster with <= 1/4 of the peak memory.

Out of core (issue 32): `--resnet-fractions 1 0.25 0.0625` gives the general engine budgets that hold all, a
quarter and a sixteenth of the ResNet's per-sample Jacobians (plus the kernel and one chunk's transient
memory); each run prints its plan (panel, streamed block, per-sample Jacobians computed) and where its time
went (Jacobians, Gram products, the rest). `--resnet-n 2048 --no-reference` times a size whose Jacobians
(22 GB) no budget here holds: the reference cannot run, and the held time is the per-sample Jacobian time
of the held run times n plus the Gram products' flops at the measured rate.
"""
import argparse
import gc
import resource
import threading
import time

import psutil
import torch

from ntkscaling.kernels.empirical import api as entk, blocks as entk_blocks, layerwise as entk_fast
from ntkscaling.kernels.empirical.general import JacobianFeatures
from ntkscaling.nets import layers, models


class PeakRSS:
    """Peak resident memory above the starting level, sampled every 10 ms."""

    def __enter__(self):
        self.proc, self.base, self.peak, self.stop = psutil.Process(), psutil.Process().memory_info().rss, 0, False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()


def measure(fn, device):
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        K = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else mem.peak
    return K, dt, peak / 1e9


def rel_diff(a, b):
    """Largest difference relative to the largest entry of b."""
    return ((a - b).abs().max() / b.abs().max()).item()


def compare(name, net, x, device, budget_gb):
    """Layerwise, reference, layerwise again: the ratio uses the mean of the two layerwise times, so a
    machine whose speed drifts during the run (shared VMs do, by 30%) biases neither side."""
    def fast():
        return entk.empirical_ntk(net, x, implementation="layerwise", max_memory_gb=budget_gb)
    K, t1, m1 = measure(fast, device)
    del K
    ref, t_ref, m_ref = measure(lambda: entk.empirical_ntk(net, x, implementation="jacobian"), device)
    fast_K, t2, m2 = measure(fast, device)
    err = rel_diff(fast_K, ref)
    t_fast, m_fast = (t1 + t2) / 2, max(m1, m2)
    print(f"{name}: jacobian {t_ref:.2f}s {m_ref:.2f}GB | layerwise {t1:.2f}s, {t2:.2f}s after, "
          f"{m_fast:.2f}GB | speed-up {t_ref / t_fast:.1f}x, memory ratio {m_fast / max(m_ref, 1e-9):.2f}, max rel diff {err:.1e}")
    return t_fast


class StageTimes:
    """Seconds the general engine spends computing per-sample Jacobians and in Gram products (the rest:
    allocation, copies, bookkeeping), and the plan it chose (its progress line)."""

    def __init__(self):
        self.jacobians = self.gram = 0.0
        self.plan = "all held"

    def __enter__(self):
        self.saved = JacobianFeatures.compute, JacobianFeatures.contract
        compute, contract = self.saved

        def timed(fn, field):
            def run(*a):
                t0 = time.perf_counter()
                out = fn(*a)
                setattr(self, field, getattr(self, field) + time.perf_counter() - t0)
                return out
            return run
        JacobianFeatures.compute, JacobianFeatures.contract = timed(compute, "jacobians"), timed(contract, "gram")
        return self

    def progress(self, line):
        if "out of core" in line:
            self.plan = line.split(": ", 1)[1]

    def __exit__(self, *exc):
        JacobianFeatures.compute, JacobianFeatures.contract = self.saved


def jacobian_bytes(net, x):
    """(bytes of one sample's retained Jacobians, of one sample's transient memory) of the general engine."""
    source = JacobianFeatures(net, "mean", x.shape[1:], x.dtype, x.device)
    return source.bytes_per_sample(x.shape[1:], x.element_size())


def compare_general(name, net, x, device, budgets_gb, fractions=(), reference=True):
    """The general engine at each memory budget (in GB, and as fractions of the per-sample Jacobians' size)
    against the reference (all per-sample Jacobians at once), reference first and last so drift biases
    neither side; the ratio uses the mean of the two. The first budget's run is the comparison point of the
    others ("vs first"): with fraction 1 first, the held run."""
    retained, transient = jacobian_bytes(net, x)
    n = len(x)
    kernel = n * n * x.element_size()

    def budget_gb(f):  # all held: the Jacobians, a full chunk's transient memory; else a panel and stream
        if f >= 1:    # holding f n samples beside a chunk that takes its share of the budget
            return (f * n * retained + entk_blocks.FEATURE_CHUNK * transient + kernel) / 1e9
        return (f * n * retained / (1 - entk_blocks.OUT_OF_CORE_TRANSIENT_SHARE) + kernel) / 1e9
    budgets = [(f"{f:g} of the Jacobians", budget_gb(f)) for f in fractions]
    budgets += [(f"{b:g} GB", b) for b in budgets_gb]
    print(f"{name}: per-sample Jacobians {retained / 1e6:.1f} MB each, {n * retained / 1e9:.2f} GB for n={n}")
    ref, t1, m1 = measure(lambda: entk.empirical_ntk(net, x, implementation="jacobian"), device) if reference \
        else (None, None, None)
    rows = []
    for label, budget in budgets:
        with StageTimes() as stages:
            K, t, m = measure(lambda: entk.empirical_ntk(net, x, implementation="general", max_memory_gb=budget,
                                                         progress=stages.progress), device)
        first = K if not rows else rows[0][-1]
        rows.append((label, budget, t, m, stages, None if ref is None else rel_diff(K, ref), rel_diff(K, first),
                     first))
        del K
    del ref
    if reference:
        _, t2, m2 = measure(lambda: entk.empirical_ntk(net, x, implementation="jacobian"), device)
        t_ref, m_ref = (t1 + t2) / 2, max(m1, m2)
        print(f"  jacobian reference {t1:.2f}s, {t2:.2f}s after, {m_ref:.2f}GB")
    t_held = rows[0][2]
    for label, budget, t, m, st, err, err_first, _ in rows:
        vs = f"time ratio {t / t_ref:.2f}, memory ratio {m / max(m_ref, 1e-9):.2f}, max rel diff {err:.1e}, " \
            if reference else ""
        print(f"  general, budget {label} ({budget:.2f} GB): {t:.2f}s {m:.2f}GB | {vs}vs first {t / t_held:.2f}x "
              f"(max rel diff {err_first:.1e}), within budget: {m <= budget} | Jacobians {st.jacobians:.1f}s, "
              f"Gram {st.gram:.1f}s, rest {t - st.jacobians - st.gram:.1f}s | {st.plan}")


def tutorial_ntk(net, x1, x2):
    """The torch.func NTK tutorial's Jacobian contraction as it is written there, mean kind: per-sample
    Jacobians of x1 and of x2 by two vmap(jacrev) calls (also when x2 is x1), one einsum per parameter
    tensor, summed. The `jacobian` reference differs in computing them once when x2 is x1 and in
    contracting all parameters in one einsum."""
    from torch.func import functional_call, jacrev, vmap
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f(p, x):
        return functional_call(net, p, (x.unsqueeze(0),)).squeeze(0)
    with torch.no_grad():
        j1 = [j.flatten(2) for j in vmap(jacrev(f), (None, 0))(params, x1).values()]
        j2 = [j.flatten(2) for j in vmap(jacrev(f), (None, 0))(params, x2).values()]
        K = torch.stack([torch.einsum("naf,maf->nm", a, b) for a, b in zip(j1, j2)]).sum(0)
    return K / j1[0].shape[1]


def layerwise_flops(net, x_shape, n, C, kind="mean"):
    """Floating-point work of the layerwise mean-kind eNTK of n images (x2 = x1): per image and logit one
    per-sample weight gradient per conv (once for the readout-diagonal layer) and one transposed conv per
    conv above the first; the forward pass; the upper triangle of the Gram over the retained features."""
    convs, h = [], torch.zeros((1,) + tuple(x_shape))
    with torch.no_grad():
        for m in net:
            if isinstance(m, layers.Conv):
                convs.append(2 * m.c_out * m.c_in * 9 * h.shape[2] * h.shape[3])
            h = m(h)
    diag = entk_fast.readout_diagonal(net, kind)
    per_image = sum(convs) + sum((1 if j == diag else C) * f for j, f in enumerate(convs)) + C * sum(convs[1:])
    retained, _ = entk_fast.bytes_per_sample(net, x_shape, C, 1, diag)
    return n * per_image + n * (n + 1) * retained


def warm_memory(gb):
    """Touch `gb` of fresh memory once and free it. On a virtual machine the first touch of guest memory
    also makes the host back it (measured here: 3-4x the cost of a later fault), so whichever side ran
    first paid for it (the layerwise run before the reference took 20.9 s, the one after 16.3 s)."""
    if gb > 0:
        torch.empty(int(gb * 1e9) // 4).fill_(0.0)
        gc.collect()


def matmul_rate(device, n=2048):
    a = torch.randn(n, n, device=device)
    a @ a
    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    if device == "cuda":
        torch.cuda.synchronize()
    return 5 * 2 * n ** 3 / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--myrtle-n", type=int, default=1024)
    ap.add_argument("--skip-mlp", action="store_true")
    ap.add_argument("--skip-myrtle", action="store_true")
    ap.add_argument("--resnet-n", type=int, default=512, help="images of the ResNet comparison (0: skip)")
    ap.add_argument("--resnet-budgets-gb", type=float, nargs="*", default=[entk.DEFAULT_MEMORY_GB, 1.0],
                    help="max_memory_gb of the general engine, one run each")
    ap.add_argument("--resnet-fractions", type=float, nargs="*", default=[],
                    help="budgets as fractions of the per-sample Jacobians' size (run first, in this order)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the torch.func reference of the ResNet comparison (it holds every Jacobian)")
    ap.add_argument("--budget-gb", type=float, default=entk.DEFAULT_MEMORY_GB, help="max_memory_gb of the layerwise eNTK")
    ap.add_argument("--warm-gb", type=float, default=None,
                    help="fresh memory to touch once before timing (default: 16 GB or 70%% of what is available)")
    ap.add_argument("--tutorial-n", type=int, default=0,
                    help="also time the torch.func tutorial's own contraction against the jacobian reference "
                         "on this many Myrtle-5 images (it holds two Jacobians: 512 fits in 24 GB)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = args.device
    warm = args.warm_gb if args.warm_gb is not None else \
        0.0 if dev == "cuda" else min(16.0, 0.7 * psutil.virtual_memory().available / 1e9)
    warm_memory(warm)
    rate = matmul_rate(dev)
    print(f"touched {warm:.0f} GB of memory once before timing")
    print(f"device {dev}, threads {torch.get_num_threads()}, float32 matmul {rate / 1e9:.0f} GFLOP/s")
    g = torch.Generator().manual_seed(0)
    if not args.skip_mlp:
        mlp = models.build("mlp", 512, (64,), 10, depth=3).to(dev)
        x = torch.randn(args.n, 64, generator=g).to(dev)
        t = compare(f"MLP 3x512 n={args.n}", mlp, x, dev, args.budget_gb)
        # contraction flops of the layerwise form: per Dense layer n^2 (fan_in + C*fan_out) multiply-adds
        fl = 2 * args.n ** 2 * sum(m.fan_in + 10 * m.fan_out for m in mlp.param_layers())
        print(f"  layerwise reaches {fl / t / rate:.0%} of the float32 matmul rate")
    if not args.skip_myrtle:
        net = models.build("myrtle5", 64, (3, 32, 32), 10).to(dev)
        x = torch.randn(args.myrtle_n, 3, 32, 32, generator=g).to(dev)
        t = compare(f"Myrtle-5 w64 32x32x3 n={args.myrtle_n}", net, x, dev, args.budget_gb)
        fl, rate_after = layerwise_flops(net, (3, 32, 32), args.myrtle_n, 10), matmul_rate(dev)
        print(f"  layerwise: {fl / 1e12:.2f} TFLOP of convolutions and matmuls, "
              f"{fl / t / ((rate + rate_after) / 2):.0%} of the float32 matmul rate ({rate_after / 1e9:.0f} GFLOP/s after)")
        if args.tutorial_n:
            x = x[:args.tutorial_n]
            ref, t_ref, m_ref = measure(lambda: entk.empirical_ntk(net, x, implementation="jacobian"), dev)
            tut, t_tut, m_tut = measure(lambda: tutorial_ntk(net, x, x), dev)
            err = rel_diff(tut, ref)
            print(f"  n={len(x)}: jacobian reference {t_ref:.2f}s {m_ref:.2f}GB | the tutorial's contraction "
                  f"{t_tut:.2f}s {m_tut:.2f}GB: the reference is {t_tut / t_ref:.1f}x faster, max rel diff {err:.1e}")
    if args.resnet_n:
        net = models.build_network({"arch": "resnet", "width": 16, "depth": 3}, (3, 32, 32), 10, seed=0).to(dev)
        x = torch.randn(args.resnet_n, 3, 32, 32, generator=g).to(dev)
        n_params = sum(p.numel() for p in net.parameters())
        compare_general(f"ResNet-20 w16 ({n_params / 1e6:.2f}M parameters, BatchNorm) 32x32x3 n={args.resnet_n}",
                        net, x, dev, args.resnet_budgets_gb, args.resnet_fractions, not args.no_reference)
    print(f"max RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
