"""Shared fixtures: paths to the repository, the reference kernels and the tiny config."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "testdata" / "ntk-reference"


@pytest.fixture(scope="session")
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference kernels not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
