"""Config validation: defaults are filled, every bad key or value is named with what is allowed."""
import copy

import pytest
import yaml

from ntkscaling.pipeline.config import JOB_KEYS, ConfigError, validate

from conftest import ROOT, write_imagefolder


def _default():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_fill():
    cfg = validate(_default())
    assert cfg["model"]["arch"] == "mlp"
    empty = validate({})
    assert empty["dataset"]["name"] == "digits" and empty["fit"]["bootstrap"] == 1000


@pytest.mark.parametrize("patch,expected", [
    (lambda c: c.update(bogus=1), r"unknown key\(s\) \['bogus'\]"),
    (lambda c: c["train"].update(lr=-1), r"'train.lr': got -1; expected a number > 0"),
    (lambda c: c["model"].update(arch="resnet50"), r"'model.arch': got 'resnet50'; expected one of"),
    (lambda c: c["train"].update(optimizer="rmsprop"), r"'train.optimizer'.*one of \['sgd', 'adam'\]"),
    (lambda c: c.update(sample_sizes=[]), r"'sample_sizes': got \[\]; expected a list with at least 2"),
    (lambda c: c.update(seeds="0"), r"'seeds': got '0'; expected a value of type array"),
    (lambda c: c["kernel"].update(ridges=[-0.1]), r"'kernel.ridges.0': got -0.1; expected a number >= 0"),
    (lambda c: c["dataset"].update(name="imagenet"), r"'dataset.name'.*one of"),
    (lambda c: c["fit"].update(n_min=2000), r"fit.n_min"),
    (lambda c: c["fit"].update(figure_ridge=0.5), r"'fit.figure_ridge': got 0.5; expected 'tuned' or one of kernel.ridges"),
    (lambda c: c["after_kernel"].update(ks=[64, 4096]), r"'after_kernel.ks': got \[4096\]; expected each k <= "
                                                        r"the largest sample size 1024"),
    (lambda c: c["evolution"].update(sample_sizes=[100]), r"'evolution.sample_sizes': got \[100\]; expected "
                                                          r"values from sample_sizes"),
    (lambda c: c["fit"].update(figure_width=7), r"'fit.figure_width': got 7; expected one of model.widths"),
    (lambda c: c["width_scaling"].update(n=3), r"'width_scaling.n': got \[3\]"),
    (lambda c: c["evolution"].update(kind="diag"), r"'evolution.kind': got 'diag'; expected one of"),
    (lambda c: c.update(sample_sizes=[64, 1500]), r"'sample_sizes': largest n=1500 exceeds the training pool of "
                                                   r"digits \(1047 examples after the 250 of the validation set "
                                                   r"and the test set\)"),
    (lambda c: c["dataset"].update(classes=[0, 1], test_size=100, val_size=60) or c.update(sample_sizes=[32, 300]),
     r"largest n=300 exceeds the training pool of digits classes \[0, 1\] \(200 examples"),
    (lambda c: c["dataset"].update(val_size=1300), r"'dataset.val_size': got 1300; the training split of digits "
                                                   r"has 1297 examples after the test set"),
    (lambda c: c["dataset"].update(name="cifar10", test_size=20000), r"'dataset.test_size': got 20000; the test "
                                                                     r"split of cifar10 has 10000"),
    (lambda c: c["dataset"].update(test_size=1797), r"'dataset.test_size': got 1797; digits has 1797 images"),
    (lambda c: c["kernel"].update(kinds=["full"], max_gb=0.5), r"'kernel.max_gb': the eNTK \(full kind\) on "
                                                               r"1024 \+ 250 \+ 500 rows would take 1.3 GB > "
                                                               r"kernel.max_gb=0.5"),
    (lambda c: c.update(bogus=1) or c["model"].update(widths=[]), r"bogus.*\n.*'model.widths': got \[\]"),
    (lambda c: c["model"].update(output_scale=10.0, center=False), r"'model.output_scale': got 10.0 with "
                                                                   r"model.center: false"),
    (lambda c: c["model"].update(output_scale=0), r"'model.output_scale': got 0; expected a number >= 0.0001"),
    (lambda c: c["dataset"].update(name="stripe", planted={"dim": 4, "direction": 9}),
     r"'dataset.planted.direction': got axis 9; expected 0..3"),
    (lambda c: c["dataset"].update(name="stripe", downsample=2), r"'dataset.downsample': got 2; expected 1 \(the "
                                                                 r"stripe task has vector inputs"),
    (lambda c: c["dataset"].update(name="stripe", planted={"train_size": 1000}),
     r"'sample_sizes': largest n=1024 exceeds the training pool of stripe \(750 examples"),
])
def test_bad_values_are_named(patch, expected):
    cfg = _default()
    patch(cfg)
    with pytest.raises(ConfigError, match=expected):
        validate(copy.deepcopy(cfg))


@pytest.mark.parametrize("preset", sorted((ROOT / "config" / "presets").glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_are_complete_and_valid(preset):
    raw = yaml.safe_load(preset.read_text())
    cfg = validate(copy.deepcopy(raw))
    assert cfg["run_name"] == preset.stem
    schema = yaml.safe_load((ROOT / "src" / "ntkscaling" / "pipeline" / "schema.yaml").read_text())
    for section, spec in schema["properties"].items():  # every key spelled out, none left to defaults
        if section in JOB_KEYS:  # what the machine offers: the profiles' business, not the experiment's
            continue
        assert section in raw, section
        if spec.get("type") == "object":
            assert set(raw[section]) == set(spec["properties"]), section


def test_key_order_does_not_matter():
    a = _default()
    b = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v) for k, v in reversed(list(a.items()))}
    assert repr(validate(copy.deepcopy(a))) == repr(validate(b))  # Snakemake compares params by their text


def test_kernel_size_estimate():
    from ntkscaling.pipeline.jobsize import kernel_sizes
    cfg = validate(_default())
    sizes = dict(kernel_sizes(cfg, 10))
    assert sizes["eNTK (mean kind)"] == pytest.approx(1774 ** 2 * 4 / 1e9)  # 1024 train + 250 val + 500 test
    assert sizes["infinite NTK (float64)"] == pytest.approx(1774 ** 2 * 8 / 1e9)


def test_npz_sizes_are_checked_before_any_job(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(300, 4, 4, 1)).astype(np.float32),
             y_train=np.arange(300) % 3, x_test=rng.normal(size=(50, 4, 4, 1)).astype(np.float32),
             y_test=np.arange(50) % 3)
    cfg = _default()
    cfg["dataset"].update(name="npz", root=str(tmp_path), file="d.npz", test_size=40, val_size=20)
    cfg.update(sample_sizes=[32, 256])
    validate(copy.deepcopy(cfg))  # 300 training examples, 20 of them for validation: fine
    cfg.update(sample_sizes=[32, 512])
    with pytest.raises(ConfigError, match=r"largest n=512 exceeds the training pool of npz \(280 examples after "
                                          r"the 20 of the validation set\)"):
        validate(copy.deepcopy(cfg))
    cfg["dataset"].update(classes=[0, 1], test_size=60)
    cfg.update(sample_sizes=[32, 256])
    with pytest.raises(ConfigError) as err:
        validate(copy.deepcopy(cfg))
    assert "largest n=256 exceeds the training pool of npz classes [0, 1] (180 examples" in str(err.value)
    assert "'dataset.test_size': got 60; the test split of npz classes [0, 1] has 34 examples" in str(err.value)
    cfg["dataset"].update(file="missing.npz", classes=None, test_size=40)
    with pytest.raises(ConfigError, match=r"missing.npz: missing; expected an .npz with x_train"):
        validate(copy.deepcopy(cfg))


def _npz_with_leak(path, leaks):
    import numpy as np
    rng = np.random.default_rng(1)
    x_train = rng.normal(size=(200, 4, 4, 1)).astype(np.float32)
    x_test = rng.normal(size=(30, 4, 4, 1)).astype(np.float32)
    for t, r in leaks:
        x_test[t] = x_train[r]
    np.savez(path, x_train=x_train, y_train=np.arange(200) % 2, x_test=x_test, y_test=np.arange(30) % 2)


def test_test_set_overlapping_train_stops_before_any_job(tmp_path):
    from ntkscaling import data
    _npz_with_leak(tmp_path / "d.npz", [(7, 123)])
    cfg = _default()
    cfg["dataset"].update(name="npz", root=str(tmp_path), file="d.npz", test_size=30, val_size=20)
    cfg.update(sample_sizes=[32, 128])
    cfg["after_kernel"]["ks"] = [64]
    with pytest.raises(ConfigError) as err:
        validate(copy.deepcopy(cfg))
    msg = str(err.value)
    assert "config key 'dataset.test_overlap': 1 test input(s) of dataset 'npz'" in msg
    assert "(test #7 = train #123)" in msg and "set dataset.test_overlap: warn" in msg
    validate(copy.deepcopy(cfg), check_data=False)  # cluster jobs skip the data read; the data job checks
    with pytest.raises(data.DatasetError, match="'dataset.test_overlap': 1 test input"):
        data.prepare("npz", tmp_path, test_size=30, file="d.npz", val_size=20)
    cfg["dataset"]["test_overlap"] = "warn"
    validate(copy.deepcopy(cfg))
    prepared = data.prepare("npz", tmp_path, test_size=30, file="d.npz", test_overlap="warn", val_size=20)
    assert int(prepared["test_overlap"]) == 1
    _npz_with_leak(tmp_path / "d.npz", [])
    cfg["dataset"]["test_overlap"] = "error"
    validate(copy.deepcopy(cfg))
    assert int(data.prepare("npz", tmp_path, test_size=30, file="d.npz", val_size=20)["test_overlap"]) == 0


def test_find_overlap_against_brute_force():
    import numpy as np
    from ntkscaling import data
    rng = np.random.default_rng(3)
    x_train = rng.integers(0, 3, size=(60, 2, 2, 1)).astype(np.float32)  # few values: natural repeats
    x_test = rng.integers(0, 3, size=(40, 2, 2, 1)).astype(np.float32)
    pairs = data.find_overlap(x_train, x_test)
    expected = [j for j in range(40) if any(np.array_equal(x_test[j], x_train[i]) for i in range(60))]
    assert [t for t, _ in pairs] == expected and len(expected) > 0
    assert all(np.array_equal(x_test[t], x_train[r]) for t, r in pairs)


def test_imagefolder_sizes_and_identical_files_before_any_job(tmp_path):
    import shutil
    write_imagefolder(tmp_path, {"train": 30, "test": 6})
    cfg = _default()
    cfg["dataset"].update(name="imagefolder", root=str(tmp_path), test_size=12, val_size=4)
    cfg.update(sample_sizes=[16, 56])
    cfg["after_kernel"]["ks"] = [16]
    validate(copy.deepcopy(cfg))
    cfg.update(sample_sizes=[16, 60])
    with pytest.raises(ConfigError, match=r"largest n=60 exceeds the training pool of imagefolder \(56 examples "
                                          r"after the 4 of the validation set\)"):
        validate(copy.deepcopy(cfg))
    cfg.update(sample_sizes=[16, 56])
    cfg["dataset"]["test_size"] = 13
    with pytest.raises(ConfigError, match=r"'dataset.test_size': got 13; the test split of imagefolder has 12"):
        validate(copy.deepcopy(cfg))
    cfg["dataset"]["test_size"] = 12
    shutil.copy(tmp_path / "train" / "dog" / "3.png", tmp_path / "test" / "cat" / "0.png")
    with pytest.raises(ConfigError, match=r"1 test image file\(s\) of .* are byte-identical to training files"):
        validate(copy.deepcopy(cfg))


def test_checking_a_config_without_a_factory_does_not_import_torch():
    """The Snakefile checks the config on every start (and in every cluster job): importing torch there costs
    seconds per snakemake call; only a user's factory needs it."""
    import subprocess
    import sys
    code = ("import sys; from ntkscaling import config, archs, code_inputs, data, jobsize, methods; "
            "from ntkscaling.training.settings import step_budget; "
            "config.validate({}); print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"
