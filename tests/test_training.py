"""Training: determinism, the checkpoint schedule, divergence errors, weights-only checkpoint loading."""
import csv
from dataclasses import replace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from ntkscaling import data, files, jobs, training
from ntkscaling.nets import models

from conftest import run_settings


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    d = data.prepare("digits", test_size=100, val_size=60)
    files.save_npz(root / "prepared.npz", **d)
    files.save_npy(root / "order.npy", data.nested_order(d["y_train"], 0))
    return root / "prepared.npz", root / "order.npy"


def _train(prepared, out, **kw):
    args = dict(arch="mlp", width=32, depth=1, lr=0.5, batch_size=16, epochs=5, log_points=4, progress=False)
    args.update(kw)
    return training.train_network(*prepared, n=48, seed=1, out_dir=out, **run_settings(**args))


def test_same_seed_same_numbers(prepared, tmp_path):
    rows1, pw1, saved1 = _train(prepared, tmp_path / "a")
    rows2, pw2, saved2 = _train(prepared, tmp_path / "b")
    assert [r["value"] for r in rows1] == [r["value"] for r in rows2]
    for method in pw1:
        for k in pw1[method]:
            np.testing.assert_array_equal(pw1[method][k], pw2[method][k])
    rows3, *_ = _train(prepared, tmp_path / "c", lr=0.3)
    assert [r["value"] for r in rows1] != [r["value"] for r in rows3]


def test_schedule_has_init_and_end_and_training_helps(prepared, tmp_path):
    rows, pointwise, saved = _train(prepared, tmp_path)
    total = 5 * 3  # 5 epochs of ceil(48/16) steps
    assert min(saved) == 0 and max(saved) == total
    assert set(training.checkpoint_steps(total, 3, 4)) <= set(saved)
    value = {(r["step"], r["metric"]): r["value"] for r in rows}
    assert value[(total, "train_loss")] < value[(0, "train_loss")]
    assert value[(total, "test_error")] == pytest.approx(pointwise["network"]["error"].mean())
    # the step-0 checkpoint is the seed's initialization, independent of n
    init = models.load_network(saved[0])
    fresh = models.build("mlp", 32, (1, 8, 8), 10, depth=1, seed=1)
    for a, b in zip(init.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_steps():
    assert training.checkpoint_steps(100, 10) == [0, 100]
    assert training.checkpoint_steps(100, 10, log_points=3) == [0, 1, 10, 100]
    assert training.checkpoint_steps(100, 10, epochs=[2, 50]) == [0, 20, 100]


def test_divergence_stops_with_clear_error(prepared, tmp_path):
    with pytest.raises(training.DivergenceError, match="lower train.lr") as err:
        _train(prepared, tmp_path, lr=1e6, epochs=20)
    # what was measured before, for a job that records the divergence (train.on_divergence: record)
    steps = {r["step"] for r in err.value.rows}
    assert 0 in steps and max(steps) <= err.value.step and all(r["method"] == "network" for r in err.value.rows)


def test_checkpoint_of_a_diverged_run_refuses_to_load(tmp_path):
    from ntkscaling.nets import models
    from ntkscaling.files import FileFormatError
    path = tmp_path / "final.ckpt"
    models.save_diverged(path, "training diverged: loss=nan at epoch 0, step 3")
    with pytest.raises(FileFormatError, match=r"final.ckpt: holds no network: its training diverged "
                                              r"\(training diverged: loss=nan at epoch 0, step 3\)"):
        models.load_network(path)


def test_nan_loss_stops_at_the_step_it_appears(prepared, tmp_path, monkeypatch):
    # the per-step check names the epoch and step (the evaluation-time check would only see it later)
    monkeypatch.setattr(training, "BLOWUP", float("inf"))  # only non-finite values count
    with pytest.raises(training.DivergenceError, match=r"loss=(nan|inf) at epoch \d+, step \d+ \(lr=1000000.0"):
        _train(prepared, tmp_path, lr=1e6, epochs=20, log_points=0, center=False)


def test_finite_blowup_is_divergence_too(prepared, tmp_path, monkeypatch):
    # a loss far above its initial value is refused even while it stays finite
    from ntkscaling.training import divergence
    monkeypatch.setattr(divergence, "BLOWUP", 1e-3)
    with pytest.raises(training.DivergenceError, match=r"train_loss is .* \(it was .* at step 0\)"):
        _train(prepared, tmp_path, epochs=1)


class _Payload:
    """Unpickling this runs code: it creates `marker` (a stand-in for anything an attacker would run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_checkpoint_is_refused_without_running_its_code(prepared, tmp_path):
    from ntkscaling.files import FileFormatError
    _, _, saved = _train(prepared, tmp_path / "run", epochs=1)
    state = torch.load(saved[max(saved)], map_location="cpu", weights_only=True)  # ours load weights-only
    marker = tmp_path / "code-ran"
    state["hyper_parameters"]["payload"] = _Payload(marker)
    crafted = tmp_path / "run" / "step00000999.ckpt"
    torch.save(state, crafted)
    with pytest.raises(FileFormatError, match="step00000999.ckpt: refused; it holds objects") as err:
        models.load_network(crafted)  # what the eNTK and evolution jobs use
    assert "weights_only" not in str(err.value)  # no advice to load it unsafely
    assert training.resume_point(crafted.parent, {"any": "signature"}) is None  # the resume search skips it
    assert not marker.exists()


@pytest.mark.parametrize("stop", [2, 6, 1])  # mid-epoch, an epoch boundary (3 steps per epoch), the first step
def test_resumed_run_gives_the_same_numbers(prepared, tmp_path, stop):
    import shutil
    full_rows, full_pw, full_saved = _train(prepared, tmp_path / "full", checkpoint_epochs=[2],
                                            live_csv=tmp_path / "full.csv")
    assert stop in full_saved
    part = tmp_path / "part"  # what an interrupted run leaves: checkpoints up to `stop`, then nothing
    part.mkdir()
    for step, path in full_saved.items():
        if step <= stop:
            shutil.copy2(path, part / path.name)
    (tmp_path / "part.csv").write_text("step\n999\n")  # the interrupted run's record, lines past the checkpoint
    rows, pw, saved = _train(prepared, part, checkpoint_epochs=[2], live_csv=tmp_path / "part.csv")
    assert rows == [{**r} for r in full_rows]
    # the live record: one line per evaluation, the tidy rows' values, the same after a resume
    assert (tmp_path / "part.csv").read_text() == (tmp_path / "full.csv").read_text()
    with open(tmp_path / "full.csv", newline="") as f:
        live = list(csv.DictReader(f))
    assert [int(r["step"]) for r in live] == sorted({r["step"] for r in full_rows})
    for r in full_rows:
        line = next(x for x in live if int(x["step"]) == r["step"])
        assert float(line[r["metric"]]) == pytest.approx(r["value"], rel=1e-5)
    for method in full_pw:
        for k in full_pw[method]:
            np.testing.assert_array_equal(pw[method][k], full_pw[method][k])
    assert sorted(saved) == sorted(full_saved)


def test_checkpoints_of_another_run_are_not_resumed(prepared, tmp_path):
    import shutil
    _, _, other = _train(prepared, tmp_path / "other", lr=0.3)
    part = tmp_path / "part"
    part.mkdir()
    for path in other.values():
        if path.name != "step00000015.ckpt":
            shutil.copy2(path, part / path.name)
    (part / "step00000099.ckpt").write_bytes(b"cut short")  # a file truncated by a crash is skipped too
    ref_rows, ref_pw, _ = _train(prepared, tmp_path / "fresh")
    rows, pw, _ = _train(prepared, part)
    assert rows == ref_rows
    np.testing.assert_array_equal(pw["network"]["error"], ref_pw["network"]["error"])


def test_resume_point_is_the_latest_checkpoint_of_this_run(prepared, tmp_path):
    import shutil
    _, _, mine = _train(prepared, tmp_path / "mine", checkpoint_epochs=[2])
    _, _, other = _train(prepared, tmp_path / "other", lr=0.3, checkpoint_epochs=[2])
    signature = torch.load(mine[max(mine)], map_location="cpu", weights_only=True)["callbacks"]
    signature = next(v for k, v in signature.items() if k.startswith("CheckpointAndEvaluate"))["signature"]
    run = tmp_path / "run"
    run.mkdir()
    steps = sorted(mine)
    for step in steps[:-1]:  # this run's checkpoints but its last
        shutil.copy2(mine[step], run / mine[step].name)
    shutil.copy2(other[max(other)], run / "step99999998.ckpt")   # a newer one of another run
    (run / "step99999999.ckpt").write_bytes(b"cut short")         # the newest, truncated by a crash
    path, step = training.resume_point(run, signature)
    assert (path.name, step) == (mine[steps[-2]].name, steps[-2])


def test_centred_network_is_exactly_zero_at_init_and_has_the_plain_networks_gradients():
    net = training.NetworkSettings("mlp", 32, depth=1, center=True)
    module = training.NetworkModule(net, in_shape=(1, 8, 8), out_dim=10, init_seed=3)
    plain = training.NetworkModule(replace(net, center=False), in_shape=(1, 8, 8), out_dim=10, init_seed=3)
    x = torch.randn(5, 1, 8, 8)
    assert torch.count_nonzero(module(x)) == 0
    assert torch.count_nonzero(plain(x)) > 0
    module(x).sum().backward()
    plain(x).sum().backward()
    for a, b in zip(module.net.parameters(), plain.net.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    assert all(not p.requires_grad for p in module.net0.parameters())


def test_step_budget_does_not_depend_on_n(prepared, tmp_path):
    budgets = {}
    for n in (16, 48):
        _, records, saved = training.train_network(*prepared, n=n, seed=1, out_dir=tmp_path / f"n{n}", **run_settings(
            arch="mlp", width=16, depth=1, lr=0.5, batch_size=16, steps=30, progress=False))
        budgets[n] = (max(saved), records["network"]["step"])
    assert budgets == {16: (30, 30), 48: (30, 30)}


def test_lr_schedule_warmup_and_decay():
    assert training.lr_factor(0, 100, "constant") == 1.0
    assert [training.lr_factor(s, 100, "cosine", warmup=0.1) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert training.lr_factor(10, 100, "cosine", warmup=0.1) == pytest.approx(1.0)
    assert training.lr_factor(55, 100, "cosine", warmup=0.1) == pytest.approx(0.5)
    assert training.lr_factor(100, 100, "cosine", warmup=0.1) == pytest.approx(0.0, abs=1e-12)
    assert training.lr_factor(55, 100, "linear", warmup=0.1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr_schedule"):
        training.lr_factor(0, 100, "step")


def test_learning_rate_follows_the_schedule_in_training(prepared, tmp_path):
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    orig = pl.Trainer

    def trainer(*a, callbacks=(), **kw):
        return orig(*a, callbacks=list(callbacks) + [Spy()], **kw)

    import unittest.mock
    with unittest.mock.patch.object(pl, "Trainer", trainer):
        training.train_network(*prepared, n=48, seed=1, out_dir=tmp_path, **run_settings(
            arch="mlp", width=16, depth=1, lr=0.4, batch_size=16, steps=20, lr_schedule="linear", warmup=0.1,
            progress=False))
    expected = [0.4 * training.lr_factor(s, 20, "linear", 0.1) for s in range(20)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_best_network_is_chosen_on_validation_data_only(prepared, tmp_path):
    rows, records, _ = _train(prepared, tmp_path, eval_points=6, epochs=10)
    val = {r["step"]: r["value"] for r in rows if r["metric"] == "val_mse" and r["method"] == "network"
           and r["step"] > 0}  # step 0 is the untrained network: never the best
    best_step = min(val, key=lambda s: (val[s], s))
    assert records["network_best"]["step"] == best_step and len(val) >= 6
    test_at_best = [r["value"] for r in rows if r["method"] == "network_best" and r["metric"] == "test_error"]
    assert test_at_best == [pytest.approx(records["network_best"]["error"].mean())]
    assert records["network_best"]["pred"].shape == (100, 10)


def test_f0_computed_once_trains_exactly_as_the_plain_centred_definition(prepared, tmp_path):
    runs = [_train(prepared, tmp_path / str(cache), cache_f0=cache)[1]["network"]["pred"] for cache in (True, False)]
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-6)


def test_training_leaves_torchs_global_flags_as_they_were(prepared, tmp_path):
    # Lightning's deterministic mode would otherwise stay on for the process (and fill every torch.empty)
    import torch.utils.deterministic as det
    before = (torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory,
              torch.backends.cudnn.benchmark)
    _train(prepared, tmp_path, epochs=1)
    assert (torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory,
            torch.backends.cudnn.benchmark) == before


def test_early_stopping_never_reports_the_untrained_network(prepared, tmp_path):
    # lr 0: every evaluation ties with step 0, the untrained (for a centred network: zero) function
    rows, records, _ = _train(prepared, tmp_path, lr=0.0, eval_points=4)
    steps = sorted({r["step"] for r in rows if r["method"] == "network"})
    assert steps[0] == 0 and records["network_best"]["step"] == steps[1]
    # its record carries the validation scores that let the fit see it never learned: the zero function's
    for method, record in records.items():
        val = {r["metric"]: r["value"] for r in rows if r["method"] == method and r["step"] == record["step"]}
        assert record["val_mse"] == val["val_mse"] and record["val_error"] == val["val_error"]
    assert records["network_best"]["val_mse"] == pytest.approx(0.1)  # 1/C of digits' 10 classes


def test_output_scale_multiplies_the_centred_output_and_divides_the_loss():
    net = training.NetworkSettings("mlp", 64, depth=1, center=True)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    outs, losses = {}, {}
    for alpha in (1.0, 10.0):
        module = training.NetworkModule(replace(net, output_scale=alpha), in_shape=(1, 8, 8), out_dim=10,
                                        init_seed=3)
        with torch.no_grad():
            module.net.param_layers()[0].weight.add_(0.01)  # move away from f0: f - f0 is not 0
        outs[alpha] = module(x).detach()
        losses[alpha] = module.training_step((x, y), 0).item()
    torch.testing.assert_close(outs[10.0], 10 * outs[1.0])
    target = torch.nn.functional.one_hot(y, 10)
    assert losses[10.0] == pytest.approx(((outs[10.0] - target) ** 2).mean().item() / 100, rel=1e-5)
    with pytest.raises(ValueError, match="model.center: true"):
        training.NetworkSettings("mlp", 64, depth=1, center=False, output_scale=10.0)


def test_output_scale_keeps_the_function_space_step_to_first_order():
    # one SGD step from initialization (where f - f0 = 0): the parameters move 1/alpha as far, the scaled
    # output moves as far as with alpha = 1 (Chizat, Oyallon and Bach 2019), up to the step's second order
    x, y = torch.randn(32, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (32,))
    moved = {}
    for alpha in (1.0, 100.0):
        module = training.NetworkModule(training.NetworkSettings("mlp", 256, depth=1, output_scale=alpha),
                                        in_shape=(1, 8, 8), out_dim=10, init_seed=0).double()
        opt = torch.optim.SGD(module.net.parameters(), lr=0.1)
        module.training_step((x, y), 0).backward()
        opt.step()
        moved[alpha] = module(x).detach()
    assert torch.count_nonzero(moved[1.0])
    rel = (moved[100.0] - moved[1.0]).norm() / moved[1.0].norm()
    assert rel < 1e-3


def test_job_logs_carry_no_lightning_noise_and_keep_other_warnings(prepared, tmp_path):
    # as in a workflow job (a script whose output goes to its log), not under pytest's own capture
    import subprocess
    import sys
    from conftest import ROOT
    log = tmp_path / "train.log"
    script = f"""
import warnings
from ntkscaling import jobs, training
with jobs.log_to({str(log)!r}):
    training.train_network({str(prepared[0])!r}, {str(prepared[1])!r}, 48, 1, {str(tmp_path / "out")!r},
                           training.NetworkSettings("mlp", 32, depth=1),
                           training.TrainSettings(lr=0.5, batch_size=16, steps=6), progress=False)
    warnings.warn("a warning of the run itself")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
    text = log.read_text()
    assert res.returncode == 0, res.stderr + text
    assert "step 6/6" in text and "a warning of the run itself" in text, text
    for noise in ("GPU available", "TPU available", "Tip:", "LeafSpec", "in eval mode", "`srun`", "weights_only",
                  "`Trainer.fit` stopped"):
        assert noise not in text, noise


def test_run_checkpoints_lists_the_evaluated_and_saved_steps_and_names_a_missing_one(prepared, tmp_path):
    rows, _, saved = _train(prepared, tmp_path / "run", eval_points=3)
    found = training.run_checkpoints(rows, saved[max(saved)], tmp_path / "run")
    evaluated = {r["step"]: r["epoch"] for r in rows}
    assert [c["step"] for c in found] == sorted(set(saved) & set(evaluated)) and found[0]["step"] == 0
    assert all(c["path"] == saved[c["step"]] and c["epoch"] == evaluated[c["step"]] for c in found)
    saved[found[1]["step"]].unlink()
    with pytest.raises(FileNotFoundError, match=f"missing: .*{saved[found[1]['step']].name}.*re-run"):
        training.run_checkpoints(rows, saved[max(saved)], tmp_path / "run")


def test_a_workflow_checkpoint_is_verified_before_it_is_resumed(prepared, tmp_path, monkeypatch):
    """Under results/, a resume checkpoint must be what its job recorded: an altered one stops the run, named
    (it never becomes final.ckpt); one whose record is missing (a job killed between writing and recording
    it) is passed over for the one before it."""
    monkeypatch.chdir(tmp_path)
    prep = tuple(tmp_path / p.name for p in prepared)
    for src, dst in zip(prepared, prep):
        dst.write_bytes(src.read_bytes())
    out = tmp_path / "results" / "run" / "train"
    _, _, saved = _train(prep, out, checkpoint_epochs=[2])
    signature = torch.load(saved[max(saved)], map_location="cpu", weights_only=True)["callbacks"]
    signature = next(v for k, v in signature.items() if k.startswith("CheckpointAndEvaluate"))["signature"]
    steps = sorted(saved)
    assert training.resume_point(out, signature)[1] == steps[-1]
    files.digest_path(saved[steps[-1]]).unlink()  # written, never recorded
    assert training.resume_point(out, signature)[1] == steps[-2]
    state = torch.load(saved[steps[-2]], map_location="cpu", weights_only=True)
    state["state_dict"] = {k: v + 1 for k, v in state["state_dict"].items()}
    torch.save(state, saved[steps[-2]])  # altered, its record left as it was
    with pytest.raises(files.FileFormatError, match=rf"{saved[steps[-2]].name}: its content differs"):
        training.resume_point(out, signature)
    with pytest.raises(files.FileFormatError, match="its content differs"):
        _train(prep, out, checkpoint_epochs=[2])
