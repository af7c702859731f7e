"""Empirical NTK of a network (at any checkpoint): the kernel stage of the pipeline.

K(x, x') = sum over parameters of J_c(x) J_d(x')^T, with gradients taken w.r.t. the model's raw parameters
(NTK parameterization puts the scale in the forward pass). Kinds, as in neural-tangents:

- ``mean``: (1/C) sum_c J_c(x).J_c(x')   -> (n1, n2)   (neural-tangents' trace_axes convention)
- ``sum``:  the NTK of the summed logits -> (n1, n2)   (= sum over c, d of the full block)
- ``full``: J_c(x).J_d(x')                -> (n1, n2, C, C)

Implementations (all return the same numbers):

- ``jacobian``: the reference for any torch module; per-sample Jacobians with torch.func (jacrev + vmap),
  then contraction.
- ``plain``: the definition for networks built by nets/models.py, by the layers' own rules (nets/layers.py): a
  forward pass records each layer's input A, a backward walk per logit gives the gradients G w.r.t. each
  layer's output, and each parametrized layer turns (A, G) into features and a Gram term. A Dense layer
  contributes (W_scale^2 A A'^T + b_scale^2) (G G'^T), so an MLP needs no Jacobian; a Conv layer's
  per-sample weight gradients are G^T unfold(A). Everything is held at once.
- ``layerwise``: the production path (kernels/empirical/layerwise.py): the same rules with fusions, within a memory budget.
- ``general``: any torch module within the memory budget (kernels/empirical/general.py): per-sample Jacobians from
  torch.func, a chunk of samples at a time, contracted block by block.

Gradients are taken w.r.t. the parameters that require them (entk_jacobian.trainable_parameters).

Both run in full float32 on GPUs (`ieee_float32`: no TF32 convolutions or matmuls).
"""
from __future__ import annotations

import contextlib
import copy

import torch

from ... import arguments
from . import blocks as entk_blocks, layerwise as entk_fast, hostmem
from .blocks import DEFAULT_MEMORY_GB
from .general import JacobianFeatures, trainable_parameters
from ...nets.layers import kernel_from_features
from ...nets.models import Network, layerwise_problem, param_layers

KINDS = ("mean", "sum", "full")
IMPLEMENTATIONS = ("auto", "jacobian", "plain", "layerwise", "general")


# --------------------------------------------------------------------------------------------- reference
def _jacobian_ntk(model, x1, x2, kind):
    from torch.func import functional_call, jacrev, vmap

    params = trainable_parameters(model)

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    def jac(x):
        J = vmap(jacrev(f), (None, 0))(params, x)
        return torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in J.values()], dim=2)  # (n, C, P)

    J1 = jac(x1)
    J2 = J1 if x2 is None else jac(x2)
    if kind == "mean":
        return torch.einsum("acp,bcp->ab", J1, J2) / J1.shape[1]
    if kind == "sum":
        return J1.sum(1) @ J2.sum(1).T
    return torch.einsum("acp,bdp->abcd", J1, J2)


# --------------------------------------------------------------------------------------------- plain
def _plain_features(model: Network, x: torch.Tensor, kind: str) -> list[dict]:
    """Each parametrized layer's eNTK features of the samples x (nets/layers.py's rules): its input A from a
    forward pass, the gradients G of every logit (or of their sum) w.r.t. its output from a backward walk
    through the layers' `vjp`."""
    inputs, h = [], x
    for layer in model:
        inputs.append(h)
        h = layer(h)
    eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    seeds = [torch.ones_like(h)] if kind == "sum" else [eye[c].expand_as(h) for c in range(h.shape[1])]
    grads = {i: [] for i, m in enumerate(model) if m.has_params}
    for g in seeds:
        for i in reversed(range(len(model))):
            if i in grads:
                grads[i].append(g)
            if i > 0:
                g = model[i].vjp(g, inputs[i])
    return [model[i].entk_features(inputs[i], torch.stack(G, dim=1)) for i, G in grads.items()]


def _plain_ntk(model: Network, x1, x2, kind):
    """The eNTK by the definition: the sum over parametrized layers of their Gram terms of the samples'
    features (all held at once; kernels/empirical/layerwise.py computes the same numbers within a memory budget)."""
    f1 = _plain_features(model, x1, kind)
    f2 = f1 if x2 is None else _plain_features(model, x2, kind)
    return kernel_from_features(param_layers(model), f1, f2, kind)


# --------------------------------------------------------------------------------------------- public API
@contextlib.contextmanager
def ieee_float32():
    """Full float32 arithmetic for CUDA convolutions and matmuls while the block runs, restored after.

    cuDNN convolutions default to TF32 on Ampere and later GPUs (a 10-bit mantissa, errors near 1e-3):
    the eNTK's float32 kernels promise 1e-5. Uses torch's fp32_precision settings where they exist (mixing
    them with the older allow_tf32 flags is an error), else those flags. No effect on CPU arithmetic."""
    b = torch.backends
    if hasattr(getattr(b.cudnn, "conv", None), "fp32_precision"):
        knobs = [(b.cudnn.conv, "fp32_precision", "ieee"), (b.cuda.matmul, "fp32_precision", "ieee")]
    else:
        knobs = [(b.cudnn, "allow_tf32", False), (b.cuda.matmul, "allow_tf32", False)]
    saved = [getattr(obj, name) for obj, name, _ in knobs]
    try:
        for obj, name, value in knobs:
            setattr(obj, name, value)
        yield
    finally:
        for (obj, name, _), value in zip(knobs, saved):
            setattr(obj, name, value)


def empirical_ntk(model, x1, x2=None, kind: str = "mean", dtype=torch.float32, implementation: str = "auto",
                  max_memory_gb: float | None = None, progress=None) -> torch.Tensor:
    """Empirical NTK of `model` between x1 and x2: Theta(x, x') = J(x) J(x')^T over all parameters.

    Args:
        model: a network from `build` (the fast layerwise engine) or any torch module (the general engine).
        x1, x2: inputs (n1, ...) and (n2, ...); x2=None computes x1 with itself (symmetric, half the work).
        kind: 'mean' (mean over the C logits of J_c J_c^T, neural-tangents' convention), 'sum' (NTK of the
            summed logits) or 'full' (every logit pair).
        dtype: float32 (default) or float64; the model is never changed (a copy is cast if needed).
        implementation: 'auto' (`engine`), 'layerwise' (networks from `build`; never forms a Jacobian),
            'general' (any module: per-sample Jacobians in blocks), 'plain' (the layers' rules, all held in
            memory: small inputs) or 'jacobian' (torch.func on all inputs at once: the reference).
        max_memory_gb: budget of the per-sample features of 'layerwise' and 'general' (default 4 GB); more
            is computed out of core.
        progress: a callable receiving progress lines, or None.

    Returns:
        torch.Tensor (n1, n2) for 'mean' and 'sum', (n1, n2, C, C) for 'full', in `dtype`, on the model's device.

    Example:
        >>> net = build("mlp", 64, (8,), 3, depth=2, seed=0)
        >>> empirical_ntk(net, torch.randn(5, 8)).shape
        torch.Size([5, 5])
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is unknown; expected one of {KINDS}")
    if next(iter(model.parameters()), None) is None:
        raise arguments.ArgumentError(f"model: has no parameters ({type(model).__name__} with {len(list(model.modules())) - 1} "
                         f"submodules); the eNTK is a sum over a network's parameters")
    implementation = engine(model, implementation)
    max_memory_gb = arguments.positive_number("max_memory_gb", max_memory_gb)
    device = next(model.parameters()).device
    was_training = model.training
    if next(model.parameters()).dtype != dtype:  # never change the caller's model
        model = copy.deepcopy(model).to(dtype=dtype)
    x1 = arguments.inputs("x1", x1, empty_ok=False).to(device=device, dtype=dtype)
    x2 = None if x2 is None else arguments.inputs("x2", x2, empty_ok=False).to(device=device, dtype=dtype)
    arguments.same_input_shape(x1, x2)
    model.eval()
    try:
        arguments.fits_model(model, x1)
        with ieee_float32():
            if implementation in ("jacobian", "plain"):
                with torch.no_grad():
                    return (_jacobian_ntk if implementation == "jacobian" else _plain_ntk)(model, x1, x2, kind)
            if implementation == "layerwise":
                source = entk_fast.LayerwiseFeatures(model, kind)
            else:
                source = JacobianFeatures(model, kind, x1.shape[1:], dtype, device)
            with hostmem.keep_freed_memory():
                return entk_blocks.bounded_ntk(source, x1, x2, max_memory_gb, progress)
    finally:
        model.train(was_training)


def engine(model, implementation: str = "auto") -> str:
    """The implementation `empirical_ntk` uses for `model`: 'auto' is 'layerwise' for a sequence of
    nets/layers.py layers that their rules compute (models.build, models.Network, or any nn.Sequential of them:
    `models.layerwise_problem`) and 'general' for any other module (tied weights, hooks, a subclass with
    another forward); a named one is checked and refused, with the reason, where it would compute another
    network's kernel."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is unknown; expected one of {IMPLEMENTATIONS}")
    problem = layerwise_problem(model)
    if implementation == "auto":
        return "general" if problem else "layerwise"
    if implementation in ("layerwise", "plain") and problem:
        raise ValueError(f"implementation={implementation!r} cannot compute this module: {problem}. It needs a "
                         f"sequence of ntkscaling's layers, each used once, with its own rules and no hooks, a "
                         f"dense readout and every parameter trained; use 'general' for any module")
    return implementation


def memory_budget_gb(mem_mb: float | None, device) -> float:
    """`max_memory_gb` for an eNTK job: on CUDA 80% of the GPU memory free now; on the CPU 80% of the job's
    memory request (`mem_mb`, as Snakemake and SLURM give it) less 1 GB for the interpreter and the data,
    at least 1 GB. The kernel itself is counted inside the budget."""
    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return 0.8 * free / 1e9
    if not mem_mb:
        return DEFAULT_MEMORY_GB
    return max(1.0, 0.8 * float(mem_mb) / 1000 - 1.0)


def empirical_ntk_from_checkpoint(path, x1, x2=None, kind: str = "mean", dtype=torch.float32,
                                  implementation: str = "auto", max_memory_gb=None, device=None, progress=None):
    """eNTK of the network stored in a training checkpoint (read weights-only: no code from the file runs).

    Args:
        path: a checkpoint written by `train_network` or the workflow (init/, train/, evolution/).
        device: where to compute (default: CUDA when visible, else the CPU); other arguments as `empirical_ntk`.

    Returns:
        torch.Tensor as `empirical_ntk`.
    """
    from ...nets.models import load_network
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    net = load_network(path, map_location=device).to(device)
    return empirical_ntk(net, x1, x2, kind=kind, dtype=dtype, implementation=implementation,
                         max_memory_gb=max_memory_gb, progress=progress)
