"""The public API: every name re-exported by the package is the library's own function, documented with
Args and Returns (or Yields), and its example runs and prints what the docstring says."""
import doctest

import numpy as np
import pytest
import torch

import ntkscaling


@pytest.mark.parametrize("name", ntkscaling.__all__)
def test_public_name_is_documented_and_its_example_runs(name):
    obj = getattr(ntkscaling, name)
    module = __import__(f"ntkscaling.{ntkscaling._LAZY[name]}", fromlist=[name])
    assert obj is getattr(module, name)
    doc = obj.__doc__ or ""
    assert len(doc.splitlines()[0]) > 20, f"{name}: no summary line"
    if name in ("load_nt_params", "load_network", "train_network"):
        return  # file-based entry points: the README's Python example runs them
    assert "Args:" in doc and ("Returns:" in doc or "Yields:" in doc), name
    globs = {"np": np, "torch": torch, **{n: getattr(ntkscaling, n) for n in ntkscaling.__all__}}
    tests = doctest.DocTestFinder().find(obj, name, globs=globs)
    examples = sum(len(t.examples) for t in tests)
    if name in ("empirical_ntk", "infinite_kernels", "kernel_regression", "fit_power_law", "build"):
        assert examples, f"{name}: no example"
    runner = doctest.DocTestRunner()
    torch.manual_seed(0)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{name}: its docstring example fails"
