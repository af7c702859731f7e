"""ntkscaling: measure whether the Neural Tangent Kernel explains how a network scales with data.

Subpackages, in pipeline order: `data` (datasets, nested subsets; numpy only), `nets` (what each layer means,
the networks built from one architecture description, checkpoints), `training` (Lightning), `kernels`
(`kernels.empirical`: the eNTK of a checkpoint; `kernels.infinite`: the infinite-width NTK/NNGP; each a plain
definition in `api` and the fast engines tested against it), `analysis` (losses, kernel regression, what a
spectrum predicts, kernel evolution, power-law fits), `pipeline` (config and schema, sweeps, job sizes, code
inputs, the predictors' tags; never torch), plus `files` (atomic outputs, tidy tables, records), `jobs`
(a job's log, its end with Snakemake, progress lines), `plotting`,
`console`, `publish` and the command-line modules `calibration` and `config_reference`. Importing the package
is cheap: torch and Lightning load only with the modules that need them, so light workflow jobs start fast.

Public API (`from ntkscaling import ...`): build, load_network, empirical_ntk, empirical_ntk_from_checkpoint,
infinite_kernels, infinite_kernels_of, kernel_regression, select_ridge, nested_regression, fit_power_law,
bootstrap_exponents, paired_deficit, train_network; each has an Args/Returns docstring with an example. The
modules keep the names they had before the subpackages (`ntkscaling.entk`, `ntkscaling.models`, ...): each
old name is the module itself (`MOVED`).
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# The public API, importable from the package itself (each loads its module on first use).
_LAZY = {"build": "nets.models", "load_network": "nets.models", "load_nt_params": "nets.models",
         "empirical_ntk": "kernels.empirical.api", "empirical_ntk_from_checkpoint": "kernels.empirical.api",
         "infinite_kernels": "kernels.infinite.api", "infinite_kernels_of": "kernels.infinite.api",
         "kernel_regression": "analysis.regression", "select_ridge": "analysis.regression",
         "nested_regression": "analysis.regression", "fit_power_law": "analysis.scaling",
         "bootstrap_exponents": "analysis.scaling", "paired_deficit": "analysis.scaling",
         "train_network": "training"}
__all__ = sorted(_LAZY)

# Modules by their names before the subpackages: `import ntkscaling.entk` gives ntkscaling.kernels.empirical.api.
MOVED = {"layers": "nets.layers", "models": "nets.models", "resnet": "nets.resnet", "archs": "nets.archs",
         "entk": "kernels.empirical.api", "entk_fast": "kernels.empirical.layerwise",
         "entk_jacobian": "kernels.empirical.general", "entk_blocks": "kernels.empirical.blocks",
         "hostmem": "kernels.empirical.hostmem", "infinite": "kernels.infinite.api",
         "infinite_blocks": "kernels.infinite.blocks", "native": "kernels.infinite.native",
         "regression": "analysis.regression", "scaling": "analysis.scaling", "theory": "analysis.theory",
         "evolution": "analysis.evolution", "metrics": "analysis.losses", "config": "pipeline.config",
         "sweep": "pipeline.sweep", "jobsize": "pipeline.jobsize", "code_inputs": "pipeline.code_inputs",
         "methods": "pipeline.tags", "io": "files"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `ntkscaling.<old name>` (MOVED) as the module that now holds it: the same module object, not a copy."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package != __name__ or old not in MOVED:
            return None
        real = importlib.util.find_spec(f"{__name__}.{MOVED[old]}")
        return importlib.util.spec_from_loader(fullname, self, origin=real.origin)

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}")
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module):  # already run; the import system gave it the alias' __spec__: undo that
        module.__spec__ = self.real_spec


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
