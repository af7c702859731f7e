"""Infinite-width NTK and NNGP of the architectures in nets/models.py, in PyTorch (CPU or CUDA).

The same layer list that builds the finite network (models.layer_specs -> nets/layers.py) drives the kernel
recursion of Jacot et al. (2018) and Arora et al. (2019) (Sigma: NNGP, Theta: NTK), each layer's step
defined by its `infinite` method:

- input: Sigma = <x, x'> / D (images: per pixel pair, summed over channels / C), Theta = 0;
- Dense / Conv 3x3 SAME: Sigma' = W_std^2 A(Sigma) + b_std^2, Theta' = W_std^2 A(Theta) + Sigma', with A the
  identity (Dense) or the mean of K(p+d, p'+d) over the 9 shifts d, zero outside the image (Conv);
- ReLU: s = sqrt(max(q q' - c^2, 0)), theta = arctan2(s, c); Sigma' = (s + (pi - theta) c) / (2 pi),
  Theta' = Theta (pi - theta) / (2 pi), where q, q' are the inputs' own variances at the two positions;
- AvgPool 2x2: the mean of K over both windows; global average pool: the mean over all pixel pairs;
  flatten: the mean over pixels of K(p, p).

`_plain_kernels` walks that recursion over all inputs at once (each input's own variances are then the
kernel's diagonal): the definition, for small inputs. The production engine (kernels/infinite/blocks.py) computes
the same numbers for blocks of input pairs within a memory budget, with fused steps (a C kernel, compiled
ReLU steps) and exact zero angles for an input with itself.
"""
from __future__ import annotations

import torch

from ... import arguments
from . import blocks as infinite_blocks
from ...nets.layers import Kernel, from_spec, input_kernel
from ...nets.layers import INFINITE_RULES
from ...nets.models import layer_specs, sequence_problem

IMPLEMENTATIONS = ("auto", "blocks", "plain")


def _plain_kernels(layers, x1, x2) -> Kernel:
    """The recursion by each layer's `infinite` step on the kernel of all inputs together; the (n1, n2)
    block of x1 with x2 (x2 None: x1 with itself)."""
    x = x1 if x2 is None else torch.cat([x1, x2])
    kernel = input_kernel(x)
    for layer in layers:
        kernel = layer.infinite(kernel)
    if x2 is None:
        return kernel
    return Kernel(nngp=kernel.nngp[:len(x1), len(x1):], ntk=kernel.ntk[:len(x1), len(x1):])


def infinite_kernels(arch: str, in_shape, x1, x2=None, depth=None, W_std: float = 2 ** 0.5, b_std: float = 0.0,
                     dtype=torch.float64, batch_size=None, max_memory_gb: float = 2.0, progress=None,
                     compile=None, native=None, implementation: str = "auto") -> Kernel:
    """Infinite-width NTK and NNGP of `arch` (the architecture `build` makes) between x1 and x2.

    Args:
        arch: 'mlp', 'myrtle5', 'myrtle7' or 'myrtle10'; in_shape: one input's shape, e.g. (3, 32, 32).
        x1, x2: inputs (n1, ...) and (n2, ...); x2=None computes x1 with itself.
        depth, W_std, b_std: as in `build` (the same layer description builds the network).
        dtype: float64 by default (the recursions lose digits in float32).

    Returns:
        layers.Kernel: fields `ntk` and `nngp`, each a torch.Tensor (n1, n2), read by name.

    Example:
        >>> kernel = infinite_kernels("mlp", (8,), torch.randn(5, 8, dtype=torch.float64), depth=2)
        >>> kernel.ntk.shape, kernel.nngp.shape
        (torch.Size([5, 5]), torch.Size([5, 5]))

    implementation: 'blocks' (the production engine, kernels/infinite/blocks.py), 'plain' (the definition: every
    layer's step on the whole kernel of x1 and x2 together, in memory; small inputs only) or 'auto' (blocks
    where it has a rule for every layer, else plain). The options below concern the blocks engine.
    batch_size: images per block side (default: blocks of about infinite_blocks.BLOCK_ELEMENTS entries,
    within `max_memory_gb`). native: compute the image pairs' conv-ReLU-pool steps with the fused C kernel
    of kernels/infinite/native.py (CPU, float64 only); None uses it there when it builds, True insists.
    compile: fuse the torch path's ReLU steps with torch.compile (True/False); None compiles when the torch path does the
    pairs and the job is large enough (infinite_blocks.COMPILE_MIN_ENTRIES pixel-pair entries) to repay
    the compilation (10-20 s the first time, then cached on disk).
    """
    x1 = arguments.inputs("x1", x1, in_shape, empty_ok=False)
    x2 = None if x2 is None else arguments.inputs("x2", x2, in_shape, empty_ok=False)
    layers = [from_spec(s) for s in layer_specs(arch, 1, in_shape, 1, depth=depth, W_std=W_std, b_std=b_std)]
    return infinite_kernels_of(layers, x1, x2, dtype=dtype, implementation=implementation, batch_size=batch_size,
                               max_memory_gb=max_memory_gb, progress=progress, compile=compile, native=native)


def infinite_kernels_of(layers, x1, x2=None, dtype=torch.float64, implementation: str = "auto",
                        **block_options) -> Kernel:
    """The infinite-width Kernel (nngp, ntk; each (n1, n2)) of a list of nets/layers.py layers between x1 and x2.

    Args:
        layers: e.g. a `Network`'s modules, or `[layers.from_spec(s) for s in specs]` (widths do not matter).
        x1, x2: inputs (n1, ...) and (n2, ...); x2=None computes x1 with itself.
        implementation: 'auto', 'blocks' or 'plain', as in `infinite_kernels`, whose block options
            (batch_size, max_memory_gb, progress, compile, native) pass through.

    Returns:
        layers.Kernel with fields nngp and ntk.

    Example:
        >>> from ntkscaling.layers import Dense, ReLU
        >>> infinite_kernels_of([Dense(4, 1, 1.0, 0.0), ReLU(), Dense(1, 1, 1.0, 0.0)], torch.eye(4)).ntk.shape
        torch.Size([4, 4])
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is unknown; expected one of {IMPLEMENTATIONS}")
    layers = list(layers)
    problem = sequence_problem(layers, INFINITE_RULES) if layers else "no layers"
    if problem:
        raise arguments.ArgumentError(f"layers: the infinite-width kernel of this sequence is not what its layers' rules "
                         f"compute: {problem}")
    x1 = arguments.inputs("x1", x1, empty_ok=False)
    x2 = None if x2 is None else arguments.inputs("x2", x2, empty_ok=False)
    arguments.same_input_shape(x1, x2)
    device = x1.device if torch.is_tensor(x1) else torch.device("cpu")
    x1 = torch.as_tensor(x1).to(device=device, dtype=dtype)
    x2 = None if x2 is None else torch.as_tensor(x2).to(device=device, dtype=dtype)
    if implementation == "auto":
        implementation = "blocks" if infinite_blocks.supports(layers) else "plain"
    if implementation == "plain":
        return _plain_kernels(layers, x1, x2)
    if not infinite_blocks.supports(layers):
        unknown = sorted({layer.type for layer in layers if not infinite_blocks.supports([layer])})
        raise ValueError(f"implementation='blocks' has no rule for layer types {unknown}; use 'plain'")
    return infinite_blocks.block_kernels(layers, x1, x1 if x2 is None else x2, x2 is None, **block_options)
