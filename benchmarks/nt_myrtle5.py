"""neural-tangents' infinite Myrtle-5 NTK+NNGP time per image pair (float64, CPU), the reference of
bench_infinite.py, run in an environment that has JAX and neural-tangents (not this project's):

    /path/to/jax-env/bin/python benchmarks/nt_myrtle5.py --n8 64 --n32 8
Prints one line per size: "<H> <ms per pair>". The layer list is models.layer_specs('myrtle5'):
[conv-relu]*2, AvgPool 2x2, conv-relu, AvgPool 2x2, conv-relu, global average pool, Dense; W_std=sqrt(2).
"""
import argparse
import sys
import time
import types

# neural_tangents/__init__ imports its TensorFlow eNTK (experimental), which this kernel does not use and
# which needs TensorFlow; an empty stand-in lets the package import without it.
sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from neural_tangents import stax  # noqa: E402


def myrtle5(W_std=2 ** 0.5):
    conv = lambda: stax.Conv(1, (3, 3), padding="SAME", W_std=W_std)  # noqa: E731
    pool = lambda: stax.AvgPool((2, 2), strides=(2, 2))  # noqa: E731
    return stax.serial(conv(), stax.Relu(), conv(), stax.Relu(), pool(), conv(), stax.Relu(), pool(),
                       conv(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=W_std))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n8", type=int, default=64)
    ap.add_argument("--n32", type=int, default=8)
    args = ap.parse_args()
    kernel_fn = jax.jit(myrtle5()[2], static_argnames="get")
    for H, C, n in ((8, 1, args.n8), (32, 3, args.n32)):
        x1 = jax.random.normal(jax.random.PRNGKey(0), (n, H, H, C), dtype=jnp.float64)
        x2 = jax.random.normal(jax.random.PRNGKey(1), (n, H, H, C), dtype=jnp.float64)
        kernel_fn(x1, x2, get=("ntk", "nngp"))[0].block_until_ready()  # compile
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            kernel_fn(x1, x2, get=("ntk", "nngp"))[0].block_until_ready()
            best = min(best, time.perf_counter() - t0)
        print(H, best / (n * n) * 1e3, flush=True)


if __name__ == "__main__":
    main()
