"""Argument checks of the public API (regression, fits, kernels): a wrong shape, a NaN, a label outside the
classes or a non-symmetric kernel is refused before any computation, with an error that names the argument
and says what was expected, instead of a torch or LAPACK message from deep inside or a silent wrong answer.
"""
from __future__ import annotations

import numpy as np


class ArgumentError(ValueError):
    """A public function's argument is not what it expects (the message names it)."""


def _shape(value) -> tuple:
    return tuple(np.shape(value))


def array(name: str, value, ndim: int | tuple | None = None, finite: bool = True) -> np.ndarray:
    """`value` as an array of real numbers with `ndim` dimensions (one of them, for a tuple), all finite."""
    try:
        out = np.asarray(value)
    except Exception as e:  # ragged lists
        raise ArgumentError(f"{name}: cannot be read as an array ({e})") from None
    if out.dtype == object or not (np.issubdtype(out.dtype, np.number) or out.dtype == bool):
        raise ArgumentError(f"{name}: expected real numbers, got an array of {out.dtype}")
    if np.iscomplexobj(out):
        raise ArgumentError(f"{name}: expected real numbers, got complex values")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and out.ndim not in allowed:
        want = " or ".join(f"{d}-dimensional" for d in allowed)
        raise ArgumentError(f"{name}: expected a {want} array, got shape {out.shape}")
    if finite and out.size and not np.all(np.isfinite(out)):
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise ArgumentError(f"{name}: {bad} of its {out.size} values are NaN or infinite")
    return out


def labels(name: str, y, n_classes: int, length: int | None = None) -> np.ndarray:
    """Integer class labels in 0..n_classes-1 (a label -1 is not 'the last class'), `length` of them."""
    y = array(name, y, ndim=1)
    if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ArgumentError(f"{name}: expected integer class labels, got non-integer values")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ArgumentError(f"{name}: labels must lie in 0..{n_classes - 1} (n_classes={n_classes}), got values "
                            f"from {y.min()} to {y.max()}")
    if length is not None and len(y) != length:
        raise ArgumentError(f"{name}: {len(y)} labels, expected {length} (one per kernel row)")
    return y


def n_classes(value) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 2:
        raise ArgumentError(f"n_classes: expected a whole number >= 2, got {value!r}")
    return int(value)


def symmetric_kernel(name: str, K: np.ndarray, rtol: float = 1e-5) -> None:
    """A square kernel (n, n) or (n, n, C, C) that equals its transpose to `rtol` of its largest entry:
    the solvers read one triangle only, so an asymmetric matrix would be used silently."""
    if K.ndim == 2 and K.shape[0] != K.shape[1] or K.ndim == 4 and (K.shape[0] != K.shape[1] or
                                                                   K.shape[2] != K.shape[3]):
        raise ArgumentError(f"{name}: expected a square kernel (n, n) or (n, n, C, C), got shape {K.shape}")
    T = K.T if K.ndim == 2 else K.transpose(1, 0, 3, 2)
    scale = float(np.abs(K).max()) if K.size else 0.0
    gap = float(np.abs(K - T).max()) if K.size else 0.0
    if gap > rtol * max(scale, np.finfo(np.float64).tiny):
        raise ArgumentError(f"{name}: not symmetric (largest |K - K^T| is {gap:.3g}, {gap / scale:.2g} of its "
                            f"largest entry); a kernel of training points with themselves must be symmetric")


def rows_match(name: str, value: np.ndarray, rows: int, what: str) -> None:
    if value.shape[0] != rows:
        raise ArgumentError(f"{name}: {value.shape[0]} rows, expected {rows} ({what})")


def positive_number(name: str, value, optional: bool = True):
    """A finite real number > 0 (None when `optional`), e.g. a memory budget in GB."""
    import math
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"{name}: expected a number > 0, got {clip_text(value)} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


MAX_RIDGE = 1e12  # relative to mean(diag K): beyond it every prediction is the zero function's to 1e-12


def ridges(name: str, values) -> list[float]:
    """At least one relative ridge, each in [0, MAX_RIDGE]."""
    out = array(name, values, ndim=(0, 1)).reshape(-1)
    if not out.size:
        raise ArgumentError(f"{name}: got no ridges; expected at least one number >= 0")
    if np.any(out < 0) or np.any(out > MAX_RIDGE):
        raise ArgumentError(f"{name}: expected numbers in [0, {MAX_RIDGE:g}] (relative to mean(diag K)), got "
                            f"{clip_text(out.tolist())}")
    return [float(v) for v in out]


def clip_text(value, limit: int = 200) -> str:
    """`value`'s repr, at most `limit` characters, built without forming the whole repr (nested lists and
    mappings are shown a few levels and items deep): an error message stays short whatever the value, even a
    YAML document whose aliases nest a list a billion items wide."""
    import reprlib
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 8, 8, 8, 8
    short.maxstring, short.maxother, short.maxlong = limit, limit, 40
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def inputs(name: str, x, in_shape=None, empty_ok: bool = True):
    """A batch of inputs (n, *in_shape) of finite real numbers, as a tensor (torch imported only here); at
    least one input unless `empty_ok`."""
    import torch
    t = torch.as_tensor(x)
    if not empty_ok and t.ndim >= 1 and len(t) == 0:
        raise ArgumentError(f"{name}: got 0 inputs (shape {tuple(t.shape)}); a kernel needs at least one")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise ArgumentError(f"{name}: expected real numbers, got a tensor of {t.dtype}")
    if t.ndim < 2:
        raise ArgumentError(f"{name}: expected a batch (n, ...) of inputs, got shape {tuple(t.shape)}")
    if in_shape is not None and tuple(t.shape[1:]) != tuple(in_shape):
        raise ArgumentError(f"{name}: inputs of shape {tuple(t.shape[1:])}, expected {tuple(in_shape)} "
                            f"(in_shape); a batch is ({len(t)}, {', '.join(map(str, in_shape))})")
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ArgumentError(f"{name}: {int((~torch.isfinite(t)).sum())} of its {t.numel()} values are NaN or "
                            f"infinite")
    return t


def same_input_shape(x1, x2) -> None:
    if x2 is not None and tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
        raise ArgumentError(f"x1 and x2: inputs of shapes {tuple(x1.shape[1:])} and {tuple(x2.shape[1:])}; "
                            f"both sides of a kernel take the same inputs")


def fits_model(model, x, name: str = "x1") -> None:
    """One input through the model: a shape it cannot take is named here, not as a matrix-product error."""
    import torch
    try:
        with torch.no_grad():
            model(x[:1])
    except RuntimeError as e:
        raise ArgumentError(f"{name}: the model cannot take inputs of shape {tuple(x.shape[1:])} ({e})") from None
