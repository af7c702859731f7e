"""The CUDA paths against the CPU ones and the references. Skipped where no GPU is visible (CI's machines);
`benchmarks/device_check.sh` runs them on a GPU machine."""
import numpy as np
import pytest
import torch

from ntkscaling import data, files, training
from ntkscaling.kernels.empirical import api as entk
from ntkscaling.kernels.infinite import api as infinite
from ntkscaling.nets import models

from conftest import reference_network, run_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def _rel(a, b):
    a, b = torch.as_tensor(a).cpu().double(), torch.as_tensor(b).cpu().double()
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", ["mlp_L2_w64_empirical", "myrtle5_w8_empirical"])
@pytest.mark.parametrize("impl", ["jacobian", "layerwise"])
def test_entk_on_cuda_matches_neural_tangents_float64(reference_dir, name, impl):
    net, x, _ = reference_network(reference_dir / name)
    net, x = net.cuda(), x.cuda()
    K = entk.empirical_ntk(net, x, kind="mean", dtype=torch.float64, implementation=impl)
    Kf = entk.empirical_ntk(net, x, kind="full", dtype=torch.float64, implementation=impl)
    assert K.is_cuda
    assert _rel(K, np.load(reference_dir / name / "entk_trace.npy")) < 1e-9
    assert _rel(Kf, np.load(reference_dir / name / "entk_full.npy")) < 1e-9


@pytest.mark.parametrize("impl", ["jacobian", "layerwise"])
def test_float32_entk_on_cuda_is_full_float32_under_default_settings(impl):
    # torch's defaults run cuDNN convolutions in TF32 on this GPU (errors near 1e-3): the kernel must not
    net = models.build("myrtle5", 8, (3, 8, 8), 10, b_std=0.1, seed=0)
    x = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = entk.empirical_ntk(net, x, dtype=torch.float64)  # CPU, float64
    for kind in ("mean", "full"):
        K = entk.empirical_ntk(net.cuda(), x.cuda(), kind=kind, implementation=impl)
        want = ref if kind == "mean" else entk.empirical_ntk(net.cpu(), x, kind=kind, dtype=torch.float64)
        assert K.is_cuda and K.dtype == torch.float32
        assert _rel(K, want) < 1e-5
        net.cpu()


def test_entk_from_checkpoint_on_cuda(tmp_path):
    net = models.build("myrtle5", 8, (1, 8, 8), 3, seed=4)
    path = tmp_path / "init.ckpt"
    training.save_init_checkpoint(path, (1, 8, 8), 3, 4, training.NetworkSettings("myrtle5", 8))
    x = torch.randn(5, 1, 8, 8)
    K = entk.empirical_ntk_from_checkpoint(path, x, device="cuda")
    assert K.is_cuda
    assert _rel(K, entk.empirical_ntk(net, x, dtype=torch.float64)) < 1e-5
    assert 0 < entk.memory_budget_gb(None, "cuda") <= torch.cuda.mem_get_info()[1] / 1e9


@pytest.mark.parametrize("compile", [False, True])
def test_infinite_kernels_on_cuda_match_the_cpu(compile):
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = infinite.infinite_kernels("myrtle5", (3, 8, 8), x, b_std=0.2, native=False, compile=False)
    gpu = infinite.infinite_kernels("myrtle5", (3, 8, 8), x.cuda(), b_std=0.2, compile=compile)
    ntk, nngp, ntk_c, nngp_c = ref.ntk, ref.nngp, gpu.ntk, gpu.nngp
    assert ntk_c.is_cuda
    assert _rel(ntk_c, ntk) < 1e-12 and _rel(nngp_c, nngp) < 1e-12


def test_training_on_cuda_is_deterministic(tmp_path):
    d = data.prepare("digits", test_size=100)
    files.save_npz(tmp_path / "prepared.npz", **d)
    files.save_npy(tmp_path / "order.npy", data.nested_order(d["y_train"], 0))
    runs = [training.train_network(tmp_path / "prepared.npz", tmp_path / "order.npy", n=48, seed=1,
                                   out_dir=tmp_path / name, **run_settings(
                                       arch="myrtle5", width=8, lr=0.5, batch_size=16, epochs=3, log_points=2,
                                       progress=False, accelerator="gpu"))
            for name in ("a", "b")]
    values = [[r["value"] for r in rows] for rows, _, _ in runs]
    assert values[0] == values[1] and all(np.isfinite(values[0]))
    losses = {r["step"]: r["value"] for r in runs[0][0] if r["metric"] == "train_loss"}
    assert losses[max(losses)] < losses[0]
