"""ntkscaling: measure whether the Neural Tangent Kernel explains how a network scales with data.

Modules, in pipeline order: data (datasets, nested subsets; numpy only), models (networks from one
architecture description), training (Lightning), metrics (shared losses), entk (empirical NTK), infinite
(infinite-width NTK/NNGP), regression (kernel ridge regression), methods (names of the compared
predictors), evolution (kernel distances during training), scaling (power-law fits), plotting (figures),
plus config (validation) and io (atomic outputs, tidy tables). Importing the package is cheap: torch and
Lightning load only with the modules that need them, so light workflow jobs start fast.
"""
__version__ = "0.1.0"

_LAZY = {"build": "models", "load_nt_params": "models"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
