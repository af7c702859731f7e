"""Networks of the pipeline: one architecture description builds the finite network (here) and,
later, its infinite-width kernel (kernels/infinite/api.py).

An architecture is a list of layer specs (plain dicts, see `layer_specs`): ``dense``, ``conv`` (3x3 SAME,
stride 1), ``relu``, ``avgpool`` (2x2/2), ``global_avg_pool`` and ``flatten``, each naming a class of
nets/layers.py, where each layer's forward pass, eNTK rule and infinite-width step are defined. `build` turns
the specs into a `Network` of those layers.

NTK parameterization (the default) follows neural-tangents exactly: parameters are raw N(0, 1) draws and
the scale sits in the forward pass (Dense: W_std/sqrt(fan_in); Conv: W_std/sqrt(C_in*9); bias times b_std).
Standard parameterization draws W ~ N(0, W_std^2/fan_in), b ~ N(0, b_std^2) and uses them as they are.
Inputs are NCHW images or (N, D) vectors; an MLP flattens images in NHWC order, as neural-tangents does.
"""
from __future__ import annotations

import copy

from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import archs, layers
from .archs import layer_specs  # the description, torch-free
from ..files import ZIP_MAGIC, FileFormatError, atomic_path, require_magic

ARCHS = archs.LAYERED
PARAMETERIZATIONS = ("ntk", "standard")
class Network(nn.Sequential):
    """A sequential network of `layers` classes that keeps the description it was built from."""

    def __init__(self, specs: list[dict], parameterization: str):
        super().__init__(*(layers.from_spec(s, parameterization) for s in specs))
        self.specs = specs
        self.parameterization = parameterization

    def param_layers(self) -> list[layers.ParamLayer]:
        return param_layers(self)


def param_layers(sequence) -> list[layers.ParamLayer]:
    """The layers with parameters of a sequence of nets/layers.py layers, in order."""
    return [m for m in sequence if isinstance(m, layers.ParamLayer)]


def _parts_are_layers(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and len(module) > 0 and all(isinstance(p, layers.Layer) for p in module)


def layerwise_problem(module: nn.Module) -> str | None:
    """Why the layerwise eNTK engine cannot compute `module`, or None when it can: a `Network`, or any
    nn.Sequential of nets/layers.py layers (whoever built it: a factory, a user), each with its backward rule
    (`vjp`), every parameter trained (the eNTK differentiates those only), a dense readout last among the
    layers with parameters, and nothing the layers' rules do not see (`sequence_problem`)."""
    if not _parts_are_layers(module):
        return "it is not an nn.Sequential of ntkscaling's layers"
    missing = [type(part).__name__ for part in module if type(part).vjp is layers.Layer.vjp]
    if missing:
        return f"layer(s) {missing} have no backward rule (vjp)"
    params = param_layers(module)
    if not params or not isinstance(params[-1], layers.Dense):
        return "its last layer with parameters is not a Dense readout"
    if not all(p.requires_grad for p in module.parameters()):
        return "some parameters are frozen (requires_grad=False)"
    return sequence_problem(module, layers.ENTK_RULES)


def sequence_problem(sequence, rules) -> str | None:
    """What in a sequence of layers the layers' own rules (`rules`, e.g. layers.ENTK_RULES) would not compute,
    or None: a layer or parameter used twice (tied weights), a layer whose rules are not those of its forward
    pass (`own_rules_problem`), a hook or a parametrization that changes what a module computes."""
    parts = list(sequence)
    seen = {}
    for i, part in enumerate(parts):
        if id(part) in seen:
            return f"layer {i} ({type(part).__name__}) is layer {seen[id(part)]} used again (tied weights)"
        seen[id(part)] = i
    owner = {}
    for i, part in enumerate(parts):
        for param in part.parameters():
            if id(param) in owner and owner[id(param)] != i:
                return f"layers {owner[id(param)]} and {i} share a parameter (tied weights)"
            owner[id(param)] = i
    for i, part in enumerate(parts):
        problem = own_rules_problem(type(part), rules)
        if problem:
            return f"layer {i}: {problem}"
    return hook_problem(sequence)


def own_rules_problem(cls, rules) -> str | None:
    """Whether class `cls`'s engine `rules` belong to its forward pass: each must be defined by the class that
    defines `forward`, or inherited from a class that defines no forward (a generic rule). A subclass that
    overrides `forward` but inherits its parent's `vjp` (or a rule overridden without `forward`) is refused."""
    mro = cls.__mro__
    f = next(i for i, c in enumerate(mro) if "forward" in vars(c))
    for name in rules:
        o = next((i for i, c in enumerate(mro) if name in vars(c)), None)
        if o is None or o == f:
            continue
        if o < f:
            return f"{cls.__name__} defines {name} but runs the forward of {mro[f].__name__}"
        if "forward" in vars(mro[o]):
            return f"{cls.__name__} defines its own forward but inherits {name} from {mro[o].__name__}"
    return None


def hook_problem(module) -> str | None:
    """A hook or parametrization that changes what a module (or a list of layers) computes beyond its layers'
    own forward, or None."""
    from torch.nn.modules import module as torch_module
    from torch.nn.utils import parametrize
    for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        if getattr(torch_module, name, None):
            return f"a global module hook is registered ({name.strip('_')})"
    roots = [("", module)] if isinstance(module, nn.Module) else [(f"{i}.", m) for i, m in enumerate(module)]
    named = ((prefix + path, m) for prefix, root in roots for path, m in root.named_modules())
    for path, m in named:
        where = path.rstrip(".") or "the module"
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, name, None):
                return f"{where} carries a {name.strip('_').replace('_', ' ')[:-1]}"
        if parametrize.is_parametrized(m):
            return f"{where} has a parametrization"
    return None


def init_params(model: Network, seed: int) -> Network:
    """Draw every parameter from its init distribution with a generator seeded by `seed` alone."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for layer in model.param_layers():
            w_std, b_std = layer.init_std
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * w_std)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * b_std)
    return model


def build(arch: str, width: int, in_shape, out_dim: int, depth: int | None = None,
          parameterization: str = "ntk", W_std: float = 2 ** 0.5, b_std: float = 0.0,
          seed: int = 0) -> Network:
    """The network `arch`, initialized from `seed`, in neural-tangents' parameterization.

    Args:
        arch: 'mlp' (depth hidden ReLU layers) or 'myrtle5' | 'myrtle7' | 'myrtle10' (conv nets).
        width: hidden units or channels; in_shape: one input's shape; out_dim: outputs (classes).
        parameterization: 'ntk' (N(0,1) parameters, W_std/sqrt(fan_in) in the forward pass) or 'standard'.
        W_std, b_std: weight and bias scales; seed: the initialization.

    Returns:
        A `Network` (a torch module) that `empirical_ntk` handles layer by layer.

    Example:
        >>> build("mlp", 64, (8,), 3, depth=2, seed=0)(torch.zeros(2, 8)).shape
        torch.Size([2, 3])
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization={parameterization!r} is unknown; expected one of {PARAMETERIZATIONS}")
    specs = layer_specs(arch, width, in_shape, out_dim, depth=depth, W_std=W_std, b_std=b_std)
    return init_params(Network(specs, parameterization), seed)


def network_from_factory(factory: str, in_shape, out_dim: int, width: int, seed: int, **kwargs) -> nn.Module:
    """A user's network: `factory` names a function ("package.module:function", or "path/to/file.py:function")
    called as function(in_shape=..., out_dim=..., width=..., **kwargs) with torch's random generator seeded
    by `seed` alone (the caller's generator state is kept), which must return an nn.Module mapping a batch
    of inputs (N, *in_shape) to (N, out_dim). Its eNTK goes through the general engine, unless it is a
    `Network`; its infinite-width kernel exists when `infinite_layers` finds one."""
    return seeded_module(resolve_factory(factory), f"model.factory={factory!r}", in_shape, out_dim, width, seed,
                          **kwargs)


def seeded_module(function, what: str, in_shape, out_dim: int, width: int, seed: int, **kwargs) -> nn.Module:
    """function(in_shape, out_dim, width, **kwargs) under a generator seeded by `seed` alone, checked to be a
    module with (N, out_dim) outputs; errors start with `what`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        module = function(in_shape=tuple(in_shape), out_dim=int(out_dim), width=int(width), **kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"{what} returned {type(module).__name__}; expected a torch nn.Module")
    with torch.no_grad():
        shape = tuple(module.eval()(torch.zeros((2,) + tuple(in_shape))).shape)
    module.train()
    if shape != (2, int(out_dim)):
        raise ValueError(f"{what}: its module maps inputs (2, *{tuple(in_shape)}) to {shape}; "
                         f"expected (2, {out_dim})")
    return module


def resolve_factory(factory: str):
    """The function a factory string names, with a clear error naming the key when it cannot be found."""
    import importlib
    import importlib.util
    where, sep, name = str(factory).rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"model.factory={factory!r}: expected 'package.module:function' or 'file.py:function'")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise ValueError(f"model.factory={factory!r}: {path} is not a file")
        spec = importlib.util.spec_from_file_location(f"ntkscaling_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"model.factory={factory!r}: {path} does not load: {_where_it_failed(e)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:  # ImportError, or an error in the module's own code
            raise ValueError(f"model.factory={factory!r}: cannot import {where}: {_where_it_failed(e)}") from None
    if not callable(getattr(module, name, None)):
        raise ValueError(f"model.factory={factory!r}: {where} has no function {name!r}")
    return getattr(module, name)


def _where_it_failed(error: Exception) -> str:
    """An import's error as a user can act on it: its type and message, and the file and line it comes from
    (a SyntaxError's own, else the last frame of the traceback)."""
    import traceback
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    frames = traceback.extract_tb(error.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    at = f" ({user[-1].filename}, line {user[-1].lineno})" if user else ""
    return f"{type(error).__name__}: {error}{at}"


def build_network(settings: dict, in_shape, out_dim: int, seed: int) -> nn.Module:
    """The network that training.NetworkSettings (as a dict, as checkpoints keep it) describe: a user's
    factory when `factory` is set, the built-in ResNet (depth = blocks per stage), else `build`."""
    if settings.get("factory"):
        return network_from_factory(settings["factory"], in_shape, out_dim, settings["width"], seed,
                                    **(settings.get("factory_kwargs") or {}))
    if settings["arch"] == "resnet":
        from . import resnet
        return seeded_module(resnet.resnet, "arch='resnet'", in_shape, out_dim, settings["width"], seed,
                              depth=settings["depth"])
    return build(settings["arch"], settings["width"], tuple(in_shape), out_dim, depth=settings["depth"],
                 parameterization=settings["parameterization"], W_std=settings["W_std"], b_std=settings["b_std"],
                 seed=seed)


def infinite_layers(module: nn.Module) -> list:
    """The nets/layers.py layers whose walk is `module`'s infinite-width limit: those of a `Network`, or of an
    nn.Sequential of nets/layers.py layers. ValueError naming the first part that has no infinite-width rule
    (any other torch layer), or saying that the module is not a plain sequence of layers."""
    if isinstance(module, Network):
        return list(module)
    for name, part in module.named_modules():
        if not list(part.children()) and not isinstance(part, layers.Layer):
            raise _no_infinite(f"its layer {name or 'itself'} ({type(part).__name__}) has no infinite-width rule")
    if not _parts_are_layers(module):
        raise _no_infinite(f"it is a {type(module).__name__}, not a sequence (nn.Sequential or models.Network) of "
                            f"ntkscaling layers, whose composition the infinite-width walk knows")
    return list(module)


def _no_infinite(why: str) -> ValueError:
    return ValueError(f"no infinite-width kernel: {why} (layers with one: {sorted(layers.LAYER_TYPES)})")


def load_nt_params(model: Network, path) -> Network:
    """Load a neural-tangents params.npz (keys L00_W, L00_b, ...; Dense W (in, out), Conv W HWIO)."""
    with np.load(path, allow_pickle=False) as z:
        layers = model.param_layers()
        keys = sorted(k[:3] for k in z.files if k.endswith("_W") and k.startswith("L"))
        if len(keys) != len(layers):
            raise ValueError(f"{path}: holds {len(keys)} parametrized layers, the model has {len(layers)}")
        with torch.no_grad():
            for key, layer in zip(keys, layers):
                W = np.asarray(z[f"{key}_W"], dtype=np.float64)
                b = np.asarray(z[f"{key}_b"], dtype=np.float64).reshape(-1)
                W = layer.weight_from_nt(W)
                if tuple(W.shape) != tuple(layer.weight.shape):
                    raise ValueError(f"{path}: {key}_W has shape {W.shape} after transposition, "
                                     f"the model expects {tuple(layer.weight.shape)}")
                layer.weight.copy_(torch.as_tensor(W))
                layer.bias.copy_(torch.as_tensor(b))
    return model


def load_checkpoint(ckpt_path, map_location="cpu") -> dict:
    """The contents of a training checkpoint, read weights-only: tensors and plain values, never objects, so
    no code from the file runs. FileFormatError naming the file when it is not such a checkpoint."""
    import pickle
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileFormatError(f"{path}: missing checkpoint; re-run the job that writes it")
    try:
        require_magic(path, ZIP_MAGIC, "a readable checkpoint (torch.save writes zip archives)")
    except FileFormatError as e:
        raise FileFormatError(f"{e}; delete it and re-run the job that writes it") from None
    try:
        state = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise FileFormatError(f"{path}: refused; it holds objects other than tensors and plain values, which "
                              f"are never unpickled (a crafted or foreign file); delete it and re-run the job "
                              f"that writes it") from None
    except Exception as e:  # truncated zip, random bytes, an old format: all the same to the user
        raise FileFormatError(f"{path}: not a readable checkpoint ({type(e).__name__}); delete it and re-run "
                              f"the job that writes it") from None
    if isinstance(state, dict) and "diverged" in state:  # save_diverged
        raise FileFormatError(f"{path}: holds no network: its training diverged ({state['diverged']}); lower "
                              f"train.lr")
    if not (isinstance(state, dict) and {"hyper_parameters", "state_dict"} <= set(state)):
        raise FileFormatError(f"{path}: not an ntkscaling training checkpoint (no hyper_parameters/state_dict)")
    return state


def save_diverged(ckpt_path, message: str):
    """The final checkpoint of a run whose divergence was recorded (train.on_divergence: record): no network,
    the message; load_checkpoint refuses it with that message."""
    with atomic_path(ckpt_path) as tmp:
        torch.save({"diverged": str(message)}, tmp)


def load_network(ckpt_path, map_location="cpu") -> Network:
    """The plain network stored in a training checkpoint (weights only, no code from the file; no
    Lightning needed to read it)."""
    state = load_checkpoint(ckpt_path, map_location)
    h = state["hyper_parameters"]
    m = h.get("network", h)  # training.NetworkSettings as a dict (flat in checkpoints of earlier versions)
    net = build_network(m, h["in_shape"], h["out_dim"], h.get("init_seed", 0))
    net.load_state_dict({k[len("net."):]: v for k, v in state["state_dict"].items() if k.startswith("net.")})
    return net


@torch.no_grad()
def network_outputs(net: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """The outputs f(x) of `net` in float64 on the CPU, in eval mode (a float64 copy: `net` is left as it was)."""
    net = copy.deepcopy(net).cpu().double().eval()
    return torch.cat([net(xb.double()) for xb in x.cpu().split(batch_size)]).numpy()
