"""Infinite Myrtle-5 NTK+NNGP speed in float64: milliseconds per image pair (kernel entry), x1 != x2.

    python benchmarks/bench_infinite.py [--n8 64] [--n32 16] [--device cpu|cuda] [--block 1]
Reference (issue 4, neural-tangents on this 2-core machine, float64): about 0.5 ms per pair on 8x8x1 and
about 130 ms per pair on 32x32x3; the target is at least 10x faster per pair. Prints the eager path and
the compiled one (the ReLU steps fused by torch.compile; compilation is warmed up outside the timing).
Each image's own kernel (2n of them) is included, as in real use, where n is much larger and they vanish.
"""
import argparse
import time

import torch

from ntkscaling import infinite


def per_pair_ms(shape, n, device, compile, batch_size=None, repeats=3):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn((n,) + shape, generator=g, dtype=torch.float64).to(device)
    x2 = torch.randn((n,) + shape, generator=g, dtype=torch.float64).to(device)
    infinite.infinite_kernels("myrtle5", shape, x1[:2], x2[:2], compile=compile, batch_size=batch_size)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        infinite.infinite_kernels("myrtle5", shape, x1, x2, batch_size=batch_size, compile=compile)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best / (n * n) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n8", type=int, default=64)
    ap.add_argument("--n32", type=int, default=16)
    ap.add_argument("--block", type=int, default=None, help="images per block side (default: automatic)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    print(f"device {args.device}, threads {torch.get_num_threads()}; best of 3 runs")
    for shape, n, ref in (((1, 8, 8), args.n8, 0.5), ((3, 32, 32), args.n32, 130.0)):
        for compile in (False, True):
            ms = per_pair_ms(shape, n, args.device, compile, args.block)
            print(f"Myrtle-5 {shape[1]}x{shape[2]}x{shape[0]}, {n}x{n} pairs, "
                  f"{'compiled' if compile else 'eager':8s}: {ms:.4f} ms per pair "
                  f"(neural-tangents about {ref} ms: {ref / ms:.1f}x)")


if __name__ == "__main__":
    main()
