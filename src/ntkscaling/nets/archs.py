"""The built-in networks' names and the layered ones' descriptions (`layer_specs`: the list of layer specs that
builds both the finite network, nets/models.py, and its infinite kernel), apart from the torch code, so that
the config check and the workflow's start-up read them (and count their parameters) without importing torch."""
from __future__ import annotations

import math

from ..arguments import ArgumentError

LAYERED = ("mlp", "myrtle5", "myrtle7", "myrtle10")  # built from a layer description (models.layer_specs)
MODULES = ("resnet",)  # built-in torch modules (nets/resnet.py), built like a user's factory
BUILT_IN = LAYERED + MODULES

MYRTLE_BLOCKS = {"myrtle5": (2, 1, 1), "myrtle7": (2, 2, 2), "myrtle10": (3, 3, 3)}


def layer_specs(arch: str, width: int, in_shape, out_dim: int, depth: int | None = None,
                W_std: float = 2 ** 0.5, b_std: float = 0.0) -> list[dict]:
    """The architecture description shared by the finite network and the infinite kernel.

    in_shape: (C, H, W) for images, (D,) for vectors.
    """
    if arch not in LAYERED:
        raise ValueError(f"arch={arch!r} is unknown; expected one of {LAYERED}")
    if width < 1:
        raise ValueError(f"width={width} must be a positive integer")
    for name, value in (("W_std", W_std), ("b_std", b_std)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ArgumentError(f"{name}={value!r}: expected a finite number >= 0")
    in_shape = tuple(int(s) for s in in_shape)
    specs: list[dict] = []
    if arch == "mlp":
        if depth is None or depth < 1:
            raise ValueError(f"arch='mlp' needs depth >= 1 hidden layers, got depth={depth!r}")
        fan_in = math.prod(in_shape)
        if len(in_shape) == 3:
            specs.append({"type": "flatten"})
        for _ in range(depth):
            specs += [{"type": "dense", "fan_in": fan_in, "fan_out": width, "W_std": W_std, "b_std": b_std},
                      {"type": "relu"}]
            fan_in = width
        specs.append({"type": "dense", "fan_in": fan_in, "fan_out": out_dim, "W_std": W_std, "b_std": b_std})
        return specs
    if len(in_shape) != 3:
        raise ValueError(f"arch={arch!r} needs image inputs (C, H, W), got in_shape={in_shape}")
    c_in, h, w = in_shape
    if h % 4 or w % 4:
        raise ValueError(f"arch={arch!r} pools twice by 2: image height and width must be multiples of 4, "
                         f"got {h}x{w}")
    for stage, n_conv in enumerate(MYRTLE_BLOCKS[arch]):
        if stage > 0:
            specs.append({"type": "avgpool"})
        for _ in range(n_conv):
            specs += [{"type": "conv", "c_in": c_in, "c_out": width, "W_std": W_std, "b_std": b_std},
                      {"type": "relu"}]
            c_in = width
    specs.append({"type": "global_avg_pool"})
    specs.append({"type": "dense", "fan_in": width, "fan_out": out_dim, "W_std": W_std, "b_std": b_std})
    return specs


def param_count(specs: list[dict]) -> int:
    """Parameters (weights and biases) of the network a layer-spec list describes."""
    total = 0
    for spec in specs:
        if spec["type"] == "dense":
            total += spec["fan_in"] * spec["fan_out"] + spec["fan_out"]
        elif spec["type"] == "conv":
            total += spec["c_in"] * spec["c_out"] * 9 + spec["c_out"]
    return total
