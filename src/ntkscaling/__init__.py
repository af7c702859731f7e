"""ntkscaling: measure whether the Neural Tangent Kernel explains how a network scales with data.

Modules, in pipeline order: data (datasets, nested subsets; numpy only), layers (each layer type's
forward pass, eNTK rule and infinite-width step), models (networks from one architecture description),
training (Lightning), metrics (shared losses), entk (empirical NTK), infinite (infinite-width NTK/NNGP),
regression (kernel ridge regression), methods (names of the compared predictors), evolution (kernel
distances during training), scaling (power-law fits), plotting (figures), plus config (validation) and io
(atomic outputs, tidy tables). entk and infinite hold the plain walks over the layers; the fast engines
that give their numbers are entk_fast, infinite_blocks and native (a C kernel), with hostmem's memory
tuning. Importing the package is cheap: torch and Lightning load only with the modules that need them, so
light workflow jobs start fast.

Public API (`from ntkscaling import ...`): build, load_network, empirical_ntk, empirical_ntk_from_checkpoint,
infinite_kernels, infinite_kernels_of, kernel_regression, select_ridge, nested_regression, fit_power_law,
bootstrap_exponents, paired_deficit, train_network; each has an Args/Returns docstring with an example.
"""
__version__ = "0.1.0"

# The public API, importable from the package itself (each loads its module on first use).
_LAZY = {"build": "models", "load_network": "models", "load_nt_params": "models",
         "empirical_ntk": "entk", "empirical_ntk_from_checkpoint": "entk",
         "infinite_kernels": "infinite", "infinite_kernels_of": "infinite",
         "kernel_regression": "regression", "select_ridge": "regression", "nested_regression": "regression",
         "fit_power_law": "scaling", "bootstrap_exponents": "scaling", "paired_deficit": "scaling",
         "train_network": "training"}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
