"""Shared fixtures: paths to the repository, the reference kernels and the tiny config."""
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout, or a copy named by NTKSCALING_REFERENCE_DIR (a GPU machine gets only the
# repository: benchmarks/device_check.sh)
REFERENCE = Path(os.environ.get("NTKSCALING_REFERENCE_DIR") or ROOT.parent / "shared" / "testdata" / "ntk-reference")


@pytest.fixture(scope="session")
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference kernels not found at {REFERENCE}")
    return REFERENCE


def reference_network(folder):
    """(network in float64 with the reference parameters loaded, inputs as NCHW or (N, D), metadata)."""
    import json

    import numpy as np

    from ntkscaling.nets import models

    meta = json.loads((folder / "meta.json").read_text())
    x = np.load(folder / "params.npz")["X"]
    if x.ndim == 4:  # NHWC -> NCHW
        x = x.transpose(0, 3, 1, 2)
    arch = "mlp" if meta["arch"] == "mlp" else f"myrtle{meta['depth']}"
    net = models.build(arch, meta["width"], x.shape[1:], meta["out_dim"],
                       depth=meta["depth"] if arch == "mlp" else None, W_std=meta["W_std"], b_std=meta["b_std"])
    models.load_nt_params(net.double(), folder / "params.npz")
    return net, torch.from_numpy(x), meta


def write_imagefolder(root, counts, seed=0, classes=("cat", "dog")):
    """root/<split>/<class>/<i>.png of random 8x8 RGB images; counts: {split: images per class}."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def venv_is_current() -> bool:
    """Whether the checkout's .venv is the one envs/setup.sh would make now (./run.sh and ./test.sh then
    install nothing): tests that run those scripts as written need it."""
    import hashlib
    stamp = ROOT / ".venv" / ".ntkscaling-installed"
    want = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("envs/ntkscaling.yaml", "pyproject.toml")))
    return stamp.exists() and stamp.read_text().strip() == want.hexdigest()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def run_settings(**kw):
    """train_network's keyword arguments from flat settings: the network's and the training's fields
    gathered into their records, the rest (log_points, progress, ...) passed as they are."""
    from dataclasses import fields

    from ntkscaling import training
    network = {f.name: kw.pop(f.name) for f in fields(training.NetworkSettings) if f.name in kw}
    train = {f.name: kw.pop(f.name) for f in fields(training.TrainSettings) if f.name in kw}
    return {"network": training.NetworkSettings(**network), "train": training.TrainSettings(**train), **kw}
