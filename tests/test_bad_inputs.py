"""Bad inputs, table by table: config values, dataset files (npz, image folders), kernel files and
checkpoints. Each is refused with a message naming the key or the file (before any job where that is
possible), expected faults end a job without a traceback, and nothing is written outside
results/<run_name>/ and logs/<run_name>/."""
import copy
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, write_imagefolder
from ntkscaling import files, training
from ntkscaling.nets import models
from ntkscaling.pipeline.config import ConfigError, validate
from ntkscaling.data import DatasetError, load_raw

TINY = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
NAN, INF = math.nan, math.inf


def _set(path, value):
    """An edit of the tiny config: `path` 'a.b' set to `value`."""
    def edit(cfg):
        *parents, key = path.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return edit


def _alias_bomb():
    """A 1 KB YAML document whose aliases nest lists 9 wide and 9 deep (387 million values)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return yaml.safe_load("\n".join(lines))["a9"]


# (case, edit of the tiny config, text the error must contain: the key, the value, what is expected)
CONFIG_CASES = [
    ("lr NaN", _set("train.lr", NAN), "'train.lr': got nan; expected a finite number"),
    ("lr infinite", _set("train.lr", INF), "'train.lr': got inf; expected a finite number"),
    ("momentum NaN", _set("train.momentum", NAN), "'train.momentum': got nan; expected a finite number"),
    ("weight decay infinite", _set("train.weight_decay", INF), "'train.weight_decay': got inf"),
    ("W_std NaN", _set("model.W_std", NAN), "'model.W_std': got nan; expected a finite number"),
    ("b_std -inf", _set("model.b_std", -INF), "'model.b_std': got -inf; expected a finite number"),
    ("a NaN ridge", _set("kernel.ridges", [NAN]), "'kernel.ridges.0': got nan; expected a finite number"),
    ("an infinite grid ridge", _set("kernel.ridge_grid", [0.0, INF]), "'kernel.ridge_grid.1': got inf"),
    ("confidence NaN", _set("fit.confidence", NAN), "'fit.confidence': got nan; expected a finite number"),
    ("evolution ridge NaN", _set("evolution.ridge", NAN), "'evolution.ridge': got nan"),
    ("kernel size guard NaN", _set("kernel.max_gb", NAN), "'kernel.max_gb': got nan; expected a finite number"),
    ("warmup NaN", _set("train.warmup", NAN), "'train.warmup': got nan"),
    ("float sample size", _set("sample_sizes", [16.0, 32, 64]),
     "'sample_sizes.0': got 16.0; expected a whole number written without a decimal point (16)"),
    ("float test size", _set("dataset.test_size", 100.0), "'dataset.test_size': got 100.0; expected a whole number"),
    ("float depth", _set("model.depth", 1.0), "'model.depth': got 1.0; expected a whole number"),
    ("fractional steps", _set("train.steps", 40.5), "'train.steps': got 40.5; expected a whole number"),
    ("float width", _set("model.widths", [16, 32.0]), "'model.widths.1': got 32.0; expected a whole number"),
    ("seed 2^64", _set("seeds", [2 ** 64]), "'seeds.0': got 18446744073709551616; expected a number <= 4000"),
    ("negative seed", _set("seeds", [-1]), "'seeds.0': got -1; expected a number >= 0"),
    ("float seed", _set("seeds", [0.0]), "'seeds.0': got 0.0; expected a whole number"),
    ("zero batch", _set("train.batch_size", 0), "'train.batch_size': got 0; expected a number >= 1"),
    ("no widths", _set("model.widths", []), "'model.widths': got []; expected a list with at least 1 item"),
    ("repeated widths", _set("model.widths", [16, 16]), "'model.widths': got [16, 16]; expected a list without"),
    ("negative lr", _set("train.lr", -1.0), "'train.lr': got -1.0; expected a number > 0"),
    ("run name with a line break", _set("run_name", "tiny\n"), "'run_name': got 'tiny\\n'; expected a plain folder name"),
    ("sweep values naming one folder", _set("sweep", {"train.lr": [0.1, 0.1000000001]}),
     "share the folder name 'lr=0.1'"),
    ("width 10^9", _set("model.widths", [16, 10 ** 9]), "'model.widths.1': got 1000000000; expected a number <= 1000000"),
    ("depth 10^6", _set("model.depth", 10 ** 6), "'model.depth': got 1000000; expected a number <= 1000"),
    ("10^9 evaluation points", _set("train.eval_points", 10 ** 9), "'train.eval_points': got 1000000000; expected a number <= 10000"),
    ("10^15 steps", _set("train.steps", 10 ** 15), "'train.steps': got 1000000000000000; expected a number <= 100000000"),
    ("10^12 bootstrap replicates", _set("fit.bootstrap", 10 ** 12), "'fit.bootstrap': got 1000000000000; expected a number <= 1000000"),
    ("10^5 checkpoints", _set("train.log_checkpoints", 10 ** 5), "'train.log_checkpoints': got 100000; expected a number <= 10000"),
    ("10^5 tracked checkpoints", _set("evolution.log_checkpoints", 10 ** 5), "'evolution.log_checkpoints': got 100000; expected a number <= 1000"),
    ("a test set of 10^12", _set("dataset.test_size", 10 ** 12), "'dataset.test_size': got 1000000000000; expected a number <= 10000000"),
    ("boolean lr", _set("train.lr", True), "'train.lr': got True; expected a value of type number"),
    ("text lr", _set("train.lr", "1.0"), "'train.lr': got '1.0'; expected a value of type number"),
    ("unknown architecture", _set("model.arch", "resnet50"), "'model.arch': got 'resnet50'; expected one of"),
    ("unknown dataset", _set("dataset.name", "imagenet"), "'dataset.name': got 'imagenet'; expected one of"),
    ("unknown kernel kind", _set("kernel.kinds", ["diag"]), "'kernel.kinds.0': got 'diag'; expected one of"),
    ("unknown validation metric", _set("select_by", "accuracy"), "'select_by': got 'accuracy'; expected one of"),
    ("misspelt top-level key", _set("sample_size", [16]), "config (top level): unknown key(s) ['sample_size']"),
    ("misspelt nested key", _set("train.learning_rate", 1.0),
     "config section 'train': unknown key(s) ['learning_rate']"),
    ("fit range holding one n", _set("fit.n_min", 64), "'fit.n_min'/'fit.n_max': range [64, 64] holds 1"),
    ("figure width not run", _set("fit.figure_width", 99), "'fit.figure_width': got 99; expected one of"),
    ("figure ridge not run", _set("fit.figure_ridge", 0.5), "'fit.figure_ridge': got 0.5; expected 'tuned'"),
    ("after-kernel k above every n", _set("after_kernel.ks", [1000]), "'after_kernel.ks': got [1000]"),
    ("tracked n not run", _set("evolution.sample_sizes", [17]), "'evolution.sample_sizes': got [17]"),
    ("width-scaling n not run", _set("width_scaling.n", 17), "'width_scaling.n': got [17]"),
    ("a class that does not exist", _set("dataset.classes", [0, 99]),
     "'dataset.classes': classes [99] do not occur in digits"),
    ("downsample not dividing the images", _set("dataset.downsample", 3),
     "'dataset.downsample': got 3; it must divide the digits image size 8x8"),
    ("validation set larger than the pool", _set("dataset.val_size", 5000), "'dataset.val_size': got 5000"),
    ("n larger than the pool", _set("sample_sizes", [16, 2000]), "'sample_sizes': largest n=2000 exceeds"),
    ("test set larger than digits", _set("dataset.test_size", 5000), "'dataset.test_size': got 5000"),
    ("negative GPUs", _set("gpus_per_job", -1), "'gpus_per_job': got -1; expected a number >= 0"),
    ("memory cap NaN", _set("max_job_mem_mb", NAN), "'max_job_mem_mb': got nan; expected a finite number"),
    ("float runtime cap", _set("max_job_runtime", 60.0), "'max_job_runtime': got 60.0; expected a whole number"),
    ("run name '..'", _set("run_name", ".."), "'run_name': got '..'; expected a string matching"),
    ("run name '.'", _set("run_name", "."), "'run_name': got '.'"),
    ("run name with a slash", _set("run_name", "../elsewhere"), "'run_name': got '../elsewhere'"),
    ("run name in a sub-folder", _set("run_name", "a/b"), "'run_name': got 'a/b'"),
    ("hidden run name", _set("run_name", ".hidden"), "'run_name': got '.hidden'"),
    ("empty run name", _set("run_name", ""), "'run_name': got ''"),
    ("output scale 1e6 (beyond float32)", _set("model.output_scale", 1e6),
     "'model.output_scale': got 1000000.0; expected a number <= 10000"),
    ("output scale 1e-30", _set("model.output_scale", 1e-30), "'model.output_scale': got 1e-30; expected a number >= 0.0001"),
    ("mode_min above mode_max", lambda c: c.setdefault("theory", {}).update(mode_min=8, mode_max=5),
     "'theory.mode_min'/'theory.mode_max': got 8 and 5; expected mode_max >= mode_min + 1"),
    ("ridge 1e308", _set("kernel.ridges", [0.0, 1e308]), "'kernel.ridges.1': got 1e+308; expected a number <= 1e+12"),
    ("nested YAML aliases", lambda c: c.update(bomb=_alias_bomb()), "config (top level): more than 100000 values"),
    ("checkpoints of 9 TB per job", lambda c: (c["model"].update(widths=[16, 10 ** 6]),
                                               c.setdefault("train", {}).update(log_checkpoints=10000)),
     "'train.max_checkpoint_gb': a training job at width 1000000 would write 10002 checkpoints of 75000010 "
     "parameters, about 9e+03 GB > train.max_checkpoint_gb=20"),
    ("a memory cap below what a kernel job holds", lambda c: (c.update(max_job_mem_mb=600, sample_sizes=[16, 1600]),
                                                             c["kernel"].update(infinite=True)),
     "'max_job_mem_mb': got 600; the job of the infinite NTK (float64) holds the kernel in memory (29 MB"),
    ("a planted task of 4 TB", lambda c: c["dataset"].update(name="stripe", planted={"dim": 100000,
                                                                                      "train_size": 10 ** 7}),
     "'dataset.planted.train_size'/'dataset.planted.dim': 10000100 inputs of dimension 100000 take 4e+03 GB"),
]


@pytest.mark.parametrize("case,edit,expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value_is_named(case, edit, expected):
    cfg = copy.deepcopy(TINY)
    edit(cfg)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert expected in str(err.value)


# ------------------------------------------------------------------------------------------ dataset files
def _npz(path, **overrides):
    """A valid small npz dataset (3 classes, 8-dim inputs), with some arrays replaced."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(90, 8)).astype(np.float32), "y_train": np.arange(90) % 3,
              "x_test": rng.normal(size=(30, 8)).astype(np.float32), "y_test": np.arange(30) % 3}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


NPZ_CASES = [  # (case, how the file is made, text the error must contain besides the file's name)
    ("truncated", lambda p: (_npz(p), _truncate(p)), "truncated or corrupt .npz"),
    ("random bytes", lambda p: p.write_bytes(os.urandom(300)), "not an .npz with x_train"),
    ("text file", lambda p: p.write_text("x,y\n1,2\n"), "not an .npz with x_train"),
    ("missing", lambda p: None, "missing; expected an .npz with x_train"),
    ("missing arrays", lambda p: _npz(p, x_test=None, y_test=None), "missing array(s) ['y_test']"),
    ("object arrays (pickles)", lambda p: _npz(p, y_train=np.array([0, "a"] * 45, dtype=object)),
     "truncated or corrupt .npz (ValueError: Object arrays cannot be loaded"),
    ("float labels", lambda p: _npz(p, y_train=(np.arange(90) % 3).astype(float)),
     "y_train must be a non-empty 1-D array of labels"),
    ("negative labels", lambda p: _npz(p, y_train=np.arange(90) % 3 - 1), "minimum -1"),
    ("gapped labels", lambda p: _npz(p, y_train=(np.arange(90) % 3) * 2, y_test=(np.arange(30) % 3) * 2),
     "classes [1, 3] (2) have no training example"),
    ("one stray label 1000", lambda p: _npz(p, y_test=np.r_[np.arange(29) % 3, 1000]),
     "labels go up to 1000 but classes [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, '...'] (998) have no training"),
    ("a single class", lambda p: _npz(p, y_train=np.zeros(90, int), y_test=np.zeros(30, int)), "a single class"),
    ("complex inputs", lambda p: _npz(p, x_train=np.ones((90, 8), np.complex64)), "must be real numbers"),
    ("NaN inputs", lambda p: _npz(p, x_test=np.full((30, 8), np.nan, np.float32)), "inputs contain NaN or inf"),
    ("inputs and labels of different lengths", lambda p: _npz(p, y_train=np.arange(80) % 3),
     "x_train (90, 8) / y_train (80,)"),
    ("train and test of different shapes", lambda p: _npz(p, x_test=np.zeros((30, 9), np.float32)),
     "x_train (8,) and x_test (9,) differ"),
    ("a label of 10^12", lambda p: _npz(p, y_test=np.r_[np.arange(29) % 3, 10 ** 12]),
     "labels go up to 1000000000000 but classes [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, '...'] (999999999998) have no"),
    ("an array header announcing 40 GB", lambda p: _npz_with_huge_member(p),
     "truncated or corrupt .npz (array x_train: its header announces 40000000000 bytes"),
    ("channel-first images", lambda p: _npz(p, x_train=np.zeros((90, 3, 8, 8), np.float32),
                                            x_test=np.zeros((30, 3, 8, 8), np.float32)),
     "x_train (90, 3, 8, 8) looks channel-first (N, C, H, W)"),
]


def _npz_with_huge_member(path):
    import io as stdio
    import zipfile
    _npz(path)
    header = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    with zipfile.ZipFile(path, "a") as z:  # a second x_train.npy entry: the one np.load reads
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("x_train.npy", header.getvalue())


def _npz_config(tmp_path, **dataset):
    cfg = copy.deepcopy(TINY)
    cfg["dataset"] = {"name": "npz", "root": str(tmp_path), "file": "data.npz", "test_size": 20, "val_size": 10,
                      **dataset}
    cfg["sample_sizes"] = [16, 32, 64]
    return cfg


@pytest.mark.parametrize("case,make,expected", NPZ_CASES, ids=[c[0] for c in NPZ_CASES])
def test_bad_npz_dataset_is_refused_before_any_job_naming_the_file(tmp_path, case, make, expected):
    make(tmp_path / "data.npz")
    with pytest.raises(ConfigError) as err:
        validate(_npz_config(tmp_path))
    assert str(tmp_path) in str(err.value) and expected in str(err.value), str(err.value)
    if (tmp_path / "data.npz").exists():  # the data job, which reads the whole file, refuses it too
        with pytest.raises(DatasetError) as err:
            load_raw("npz", tmp_path, file="data.npz")
        assert str(tmp_path) in str(err.value)


LABEL_CASES = ["float labels", "negative labels", "gapped labels", "one stray label 1000", "a single class"]


@pytest.mark.parametrize("case", LABEL_CASES)
def test_label_problems_are_found_from_the_label_arrays_alone(tmp_path, case):
    # with test_overlap: warn nothing reads the images before the data job; the labels are still checked
    make, expected = next((m, e) for c, m, e in NPZ_CASES if c == case)
    make(tmp_path / "data.npz")
    with pytest.raises(ConfigError) as err:
        validate(_npz_config(tmp_path, test_overlap="warn"))
    assert str(tmp_path) in str(err.value) and expected in str(err.value), str(err.value)


def test_requested_npz_class_that_does_not_occur_is_named(tmp_path):
    _npz(tmp_path / "data.npz")
    with pytest.raises(ConfigError, match=r"'dataset.classes': classes \[5\] do not occur in .*data.npz"):
        validate(_npz_config(tmp_path, classes=[0, 5]))
    with pytest.raises(DatasetError, match=r"'dataset.classes': classes \[5\] do not occur"):
        load_raw("npz", tmp_path, file="data.npz", classes=[0, 5])


def _folder_without_train(root):
    (root / "test" / "cat").mkdir(parents=True)


def _empty_class(root):
    write_imagefolder(root, {"train": 3, "test": 2}, classes=("cat", "dog"))
    (root / "train" / "emu").mkdir()
    (root / "test" / "emu").mkdir()


def _broken_image(root):
    write_imagefolder(root, {"train": 3, "test": 2})
    (root / "train" / "cat" / "9.png").write_bytes(b"\x89PNG not really")


def _missing_test_class(root):
    write_imagefolder(root, {"train": 3, "test": 2})
    for f in (root / "test" / "dog").iterdir():
        f.unlink()
    (root / "test" / "dog").rmdir()


def _mixed_sizes(root):
    from PIL import Image
    write_imagefolder(root, {"train": 3, "test": 2})
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "train" / "dog" / "big.png")


def _sixteen_bit(root):
    from PIL import Image
    write_imagefolder(root, {"train": 3, "test": 2})
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "train" / "cat" / "deep.png")


def _extra_test_class(root):
    write_imagefolder(root, {"train": 3, "test": 2})
    (root / "test" / "emu").mkdir()
    (root / "test" / "dog" / "0.png").rename(root / "test" / "emu" / "0.png")


def _with_special(root, make):
    write_imagefolder(root, {"train": 3, "test": 2})
    make(root / "train" / "dog" / "odd.png")


FOLDER_CASES = [  # (case, how the folder is made, text of the error, refused at start-up?)
    ("a FIFO named .png", lambda r: _with_special(r, os.mkfifo), "odd.png: a FIFO (named pipe), not a file", True),
    ("a link to /dev/zero named .png", lambda r: _with_special(r, lambda p: p.symlink_to("/dev/zero")),
     "odd.png: a character device, not a file", True),
    ("no train folder", _folder_without_train, "train has no class folders", True),
    ("a class without images", _empty_class, "classes [2] (1) have no training example", True),
    ("a broken image", _broken_image, "9.png: not a readable image", False),
    ("test lacks a class", _missing_test_class, "test/dog: missing; test/ must have the same class folders", False),
    ("images of different sizes", _mixed_sizes, "big.png: image of shape", False),
    ("a 16-bit image", _sixteen_bit, "deep.png: a I;16 image (16-bit or floating point)", False),
    ("a test class missing from train", _extra_test_class, "class folder(s) ['emu'] have no counterpart in train/",
     False),
]


@pytest.mark.parametrize("case,make,expected,at_start", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_bad_image_folder_is_refused_naming_the_folder_or_file(tmp_path, case, make, expected, at_start):
    make(tmp_path)
    if at_start:
        cfg = copy.deepcopy(TINY)
        cfg["dataset"] = {"name": "imagefolder", "root": str(tmp_path), "test_size": 2, "val_size": 1}
        cfg["sample_sizes"] = [1, 2]
        cfg["after_kernel"]["ks"] = [1]
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        assert expected in str(err.value), str(err.value)
    if not at_start or "not a file" in expected:  # the data job's reader says the same
        with pytest.raises(DatasetError) as err:
            load_raw("imagefolder", tmp_path)
        assert expected in str(err.value) and str(tmp_path) in str(err.value), str(err.value)


# ------------------------------------------------------------------------- kernel files and checkpoints
def _kernel(path):
    np.save(path, np.eye(20, dtype=np.float32))


NPY_CASES = [
    ("truncated kernel", lambda p: (_kernel(p), _truncate(p)), "truncated or corrupt .npy"),
    ("random bytes", lambda p: p.write_bytes(os.urandom(200)), "not an .npy array file"),
    ("an npz in its place", lambda p: np.savez(open(p, "wb"), K=np.eye(3)), "not an .npy array file (it starts with b'PK"),
    ("a pickled object array", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
     "corrupt .npy"),
    ("missing", lambda p: None, "missing; expected an .npy array file"),
    ("empty file", lambda p: p.write_bytes(b""), "not an .npy array file"),
    ("a header announcing 40 GB", lambda p: _huge_header(p), "truncated or corrupt .npy (its header announces "
                                                              "40000000000 bytes of data, 0 are there)"),
    ("a FIFO", lambda p: os.mkfifo(p), "a FIFO (named pipe), not a file"),  # opening it would hang
    ("a directory", lambda p: p.mkdir(), "a directory, not a file"),
    ("a link to /dev/zero", lambda p: p.symlink_to("/dev/zero"), "a character device, not a file"),  # endless
]


def _huge_header(path):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})



@pytest.mark.parametrize("case,make,expected", NPY_CASES, ids=[c[0] for c in NPY_CASES])
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mapped"])
def test_bad_kernel_file_is_named(tmp_path, case, make, expected, mmap):
    path = tmp_path / "mean.npy"
    make(path)
    with pytest.raises(files.FileFormatError) as err:
        files.load_npy(path, mmap=mmap)
    assert str(path) in str(err.value) and expected in str(err.value), str(err.value)


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "init.ckpt"
    training.save_init_checkpoint(path, (4,), 3, seed=0, network=training.NetworkSettings("mlp", 8, depth=1))
    return path


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ntkscaling-bad-input-ran",))


CHECKPOINT_CASES = [
    ("truncated", lambda p, good: (p.write_bytes(good.read_bytes()), _truncate(p)), "not a readable checkpoint"),
    ("random bytes", lambda p, good: p.write_bytes(random.Random(0).randbytes(500)),
     "not a readable checkpoint (torch.save writes zip archives)"),  # the magic-bytes check's message
    ("code inside", lambda p, good: torch.save({"hyper_parameters": _Payload(), "state_dict": {}}, p),
     "refused; it holds objects other than tensors"),
    ("another program's checkpoint", lambda p, good: torch.save({"model": {"w": torch.ones(2)}}, p),
     "not an ntkscaling training checkpoint"),
    ("missing", lambda p, good: None, "missing checkpoint"),
]


@pytest.mark.parametrize("case,make,expected", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_bad_checkpoint_is_named_and_never_runs_code(tmp_path, init_checkpoint, case, make, expected):
    path = tmp_path / "step00000010.ckpt"
    make(path, init_checkpoint)
    with pytest.raises(files.FileFormatError) as err:
        models.load_network(path)
    assert str(path) in str(err.value) and expected in str(err.value), str(err.value)
    assert "weights_only" not in str(err.value)
    assert not os.path.exists("/tmp/ntkscaling-bad-input-ran")


def test_checkpoint_without_a_training_schedule_is_named(init_checkpoint):
    # the initialization is a network checkpoint but no training run's: kernel evolution cannot follow it
    with pytest.raises(files.FileFormatError, match=f"{init_checkpoint}: not a checkpoint of ntkscaling's training"):
        training.saved_checkpoint_steps(init_checkpoint)


# ------------------------------------------------------------------------- the public Python API
def _kr_args():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(14, 3))
    K = x @ x.T + 1.0
    y = np.array([0, 1, 2] * 4 + [0, 1])
    return {"K_train": K[:10, :10], "K_test_train": K[10:, :10], "y_train": y[:10], "y_test": y[10:],
            "n_classes": 3, "ridges": [0.0, 0.1]}


def _with(**changes):
    def make():
        args = _kr_args()
        for key, change in changes.items():
            args[key] = change(args[key]) if callable(change) else change
        return args
    return make


def _asymmetric(K):
    K = K.copy()
    K[0, 1] += 1.0
    return K


def _nan_at(K):
    K = K.astype(float).copy()
    K[1, 2] = np.nan
    return K


# (case, arguments of kernel_regression, text the error must contain: the argument and what is expected)
API_CASES = [
    ("NaN in the training kernel", _with(K_train=_nan_at), "K_train: 1 of its 100 values are NaN or infinite"),
    ("inf in the test kernel", _with(K_test_train=lambda K: K * np.inf), "K_test_train: 40 of its 40 values"),
    ("non-symmetric training kernel", _with(K_train=_asymmetric), "K_train: not symmetric"),
    ("non-square training kernel", _with(K_train=lambda K: K[:, :9]), "K_train: expected a square kernel"),
    ("test kernel with the wrong columns", _with(K_test_train=lambda K: K[:, :8]),
     "K_test_train: shape (4, 8), expected (m,) + (10,)"),
    ("one-dimensional kernel", _with(K_train=lambda K: K[0]), "K_train: expected a 2-dimensional or 4-dimensional"),
    ("label -1", _with(y_train=lambda y: np.where(np.arange(10) == 3, -1, y)),
     "y_train: labels must lie in 0..2 (n_classes=3), got values from -1 to 2"),
    ("label = n_classes", _with(y_test=lambda y: y + 1), "y_test: labels must lie in 0..2"),
    ("fractional label", _with(y_train=lambda y: y + 0.5), "y_train: expected integer class labels"),
    ("labels one short", _with(y_train=lambda y: y[:9]), "y_train: 9 labels, expected 10"),
    ("test labels one too many", _with(y_test=lambda y: np.append(y, 0)), "y_test: 5 labels, expected 4"),
    ("text labels", _with(y_train=lambda y: y.astype(str)), "y_train: expected real numbers"),
    ("one class", _with(n_classes=1), "n_classes: expected a whole number >= 2, got 1"),
    ("fractional class count", _with(n_classes=2.5), "n_classes: expected a whole number >= 2, got 2.5"),
    ("negative ridge", _with(ridges=[0.1, -1.0]), "ridges: expected numbers in [0, 1e+12]"),
    ("ridge 1e308", _with(ridges=[1e308]), "ridges: expected numbers in [0, 1e+12] (relative to mean(diag K)), got [1e+308]"),
    ("no ridges", _with(ridges=[]), "ridges: got no ridges"),
    ("NaN ridge", _with(ridges=[np.nan]), "ridges: 1 of its 1 values are NaN or infinite"),
    ("prior of the wrong shape", _with(prior_train=np.zeros((10, 2))), "prior_train: shape (10, 2), expected (10, 3)"),
    ("NaN prior", _with(prior_test=np.full((4, 3), np.nan)), "prior_test: 12 of its 12 values are NaN"),
]


@pytest.mark.parametrize("case,make,expected", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_api_argument_is_named(case, make, expected):
    from ntkscaling import arguments
    from ntkscaling.analysis import regression
    args = make()
    with pytest.raises(arguments.ArgumentError) as err:
        regression.kernel_regression(**args)
    assert expected in str(err.value)
    if "y_test" not in expected and "prior_test" not in expected and "K_test" not in expected:
        renamed = {"K_test_train": "K_val_train", "y_test": "y_val", "ridges": "grid", "prior_test": "prior_val"}
        val = {renamed.get(key, key): value for key, value in args.items()}
        with pytest.raises(arguments.ArgumentError, match=expected.replace("ridges", "grid").split(":")[0]):
            regression.select_ridge(**val)  # the validation-side twin says the same


FIT_CASES = [
    ("sizes and values of different lengths", lambda sc: sc.fit_power_law([16, 32, 64], [0.5, 0.4]),
     "n and y: 3 sizes but 2 values"),
    ("a size of 0", lambda sc: sc.fit_power_law([0, 32, 64], [0.5, 0.4, 0.3]), "n: training-set sizes must be > 0"),
    ("text sizes", lambda sc: sc.fit_power_law(["16", "32"], [0.5, 0.4]), "n: expected real numbers"),
    ("curves over other sizes", lambda sc: sc.bootstrap_exponents([16, 32, 64], {"a": np.ones((2, 2, 5))}),
     "curves: every curve must be (len(ns)=3, seeds, points)"),
    ("curves over other test points", lambda sc: sc.bootstrap_exponents(
        [16, 32], {"a": np.ones((2, 2, 5)), "b": np.ones((2, 2, 6))}), "with the same seeds and test points"),
    ("a curve without seeds", lambda sc: sc.bootstrap_exponents([16, 32], {"a": np.ones((2, 5))}),
     "curves['a']: expected a 3-dimensional array"),
    ("confidence 95", lambda sc: sc.bootstrap_exponents([16, 32], {"a": np.ones((2, 2, 5))}, confidence=95),
     "confidence: expected a number between 0 and 1, got 95"),
    ("a deficit of unpaired curves", lambda sc: sc.paired_deficit(
        sc.bootstrap_exponents([16, 32], {"a": np.ones((2, 2, 5))}, n_boot=10)["a"],
        sc.bootstrap_exponents([16, 32], {"a": np.ones((2, 3, 5))}, n_boot=10)["a"]), "reference and other: not paired"),
    ("a deficit of a bare exponent", lambda sc: sc.paired_deficit({"alpha": 0.5}, {"alpha": 0.4}),
     "reference: expected one curve's result of bootstrap_exponents"),
]


@pytest.mark.parametrize("case,call,expected", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_bad_fit_argument_is_named(case, call, expected):
    from ntkscaling import arguments
    from ntkscaling.analysis import scaling
    with pytest.raises(arguments.ArgumentError) as err:
        call(scaling)
    assert expected in str(err.value)


KERNEL_API_CASES = [  # (case, call with (entk, infinite, models, torch), text of the error)
    ("NaN inputs to the eNTK", lambda e, i, m, t: e.empirical_ntk(m.build("mlp", 8, (4,), 2, depth=1, seed=0),
                                                                  t.full((3, 4), float("nan"))),
     "x1: 12 of its 12 values are NaN or infinite"),
    ("inputs the network cannot take", lambda e, i, m, t: e.empirical_ntk(m.build("mlp", 8, (4,), 2, depth=1, seed=0),
                                                                          t.zeros(3, 5)),
     "x1: the model cannot take inputs of shape (5,)"),
    ("x1 and x2 of different shapes", lambda e, i, m, t: e.empirical_ntk(m.build("mlp", 8, (4,), 2, depth=1, seed=0),
                                                                         t.zeros(3, 4), t.zeros(2, 5)),
     "x1 and x2: inputs of shapes (4,) and (5,)"),
    ("one input without a batch axis", lambda e, i, m, t: e.empirical_ntk(m.build("mlp", 8, (4,), 2, depth=1, seed=0),
                                                                          t.zeros(4)),
     "x1: expected a batch (n, ...) of inputs, got shape (4,)"),
    ("infinite kernel with the wrong in_shape", lambda e, i, m, t: i.infinite_kernels("mlp", (5,), t.zeros(3, 4)),
     "x1: inputs of shape (4,), expected (5,) (in_shape)"),
    ("infinite kernel of infinite inputs", lambda e, i, m, t: i.infinite_kernels("mlp", (4,), t.full((2, 4), float("inf"))),
     "x1: 8 of its 8 values are NaN or infinite"),
    ("infinite kernel of 0 inputs", lambda e, i, m, t: i.infinite_kernels("mlp", (3,), t.zeros(0, 3), depth=1),
     "x1: got 0 inputs"),
    ("infinite kernel with W_std NaN", lambda e, i, m, t: i.infinite_kernels("mlp", (3,), t.ones(2, 3), depth=1,
                                                                              W_std=float("nan")),
     "W_std=nan: expected a finite number >= 0"),
    ("a network with b_std -1", lambda e, i, m, t: m.build("mlp", 8, (3,), 2, depth=1, b_std=-1.0),
     "b_std=-1.0: expected a finite number >= 0"),
    ("infinite kernel of no layers", lambda e, i, m, t: i.infinite_kernels_of([], t.zeros(2, 3)), "no layers"),
    ("eNTK of an empty nn.Sequential", lambda e, i, m, t: e.empirical_ntk(t.nn.Sequential(), t.zeros(2, 3)),
     "model: has no parameters"),
    *[(f"eNTK budget {budget!r}", lambda e, i, m, t, budget=budget: e.empirical_ntk(
        m.build("mlp", 8, (4,), 2, depth=1, seed=0), t.zeros(3, 4), max_memory_gb=budget), says)
      for budget, says in ((0, "max_memory_gb: expected a finite number > 0, got 0"),
                           (-4, "max_memory_gb: expected a finite number > 0, got -4"),
                           (float("nan"), "got nan"), (float("inf"), "got inf"),
                           ("4", "max_memory_gb: expected a number > 0, got '4' (str)"),
                           (1e-9, "max_memory_gb=1e-09: the kernel itself (3 x 3) takes"))],
]


@pytest.mark.parametrize("case,call,expected", KERNEL_API_CASES, ids=[c[0] for c in KERNEL_API_CASES])
def test_bad_kernel_api_argument_is_named(case, call, expected):
    from ntkscaling import arguments
    from ntkscaling.kernels.empirical import api as entk
    from ntkscaling.kernels.infinite import api as infinite
    with pytest.raises(arguments.ArgumentError) as err:
        call(entk, infinite, models, torch)
    assert expected in str(err.value)


def test_good_api_arguments_still_solve():
    from ntkscaling.analysis import regression
    args = _kr_args()
    res = regression.kernel_regression(**args)
    assert len(res) == 2 and res[0]["pred"].shape == (4, 3)


# ------------------------------------------------------------------------- through the workflow itself
def _snakemake(*args, cwd):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def _files(root):
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and ".snakemake" not in p.parts}


CLI_CASES = [  # refused while the workflow is parsed: no job, no file anywhere
    ("run name escaping its folder", ("--config", "run_name=.."), "'run_name': got '..'"),
    ("NaN through --config", ("--config", "gpus_per_job=nan"), "'gpus_per_job': got nan"),
    ("float through --config", ("--config", "max_job_mem_mb=4000.0"), "'max_job_mem_mb': got 4000.0"),
    ("list through --config", ("--config", "seeds=[0,1]"), "'seeds.0': got '0'; expected a value of type integer, not text"),
]


@pytest.mark.workflow
@pytest.mark.parametrize("case,args,expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_value_on_the_command_line_stops_before_any_job(tmp_path, case, args, expected):
    res = _snakemake("--configfile", str(ROOT / "tests" / "configs" / "tiny.yaml"), *args, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and expected in out, out[-2000:]
    assert "Traceback" not in out
    assert _files(tmp_path) == set() and not (ROOT / "data" / "prepared.npz").exists()


def _small_config(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg.update(seeds=[0])
    cfg["model"]["widths"] = [16]
    cfg["after_kernel"]["at_n"] = False
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.workflow
def test_bad_files_inside_jobs_end_them_with_the_file_named_and_no_traceback(tmp_path):
    config = _small_config(tmp_path)
    kernel = "results/tiny/kernels/entk_init/w16/s0/mean.npy"
    res = _snakemake(kernel, "--configfile", str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    before = _files(tmp_path)
    changed = "its content differs from what the job that wrote it recorded"  # the producer's digest
    cases = [  # (file to spoil, how, target that reads it, the job's log, message, digest re-recorded)
        (kernel, _truncate, "results/tiny/regression/entk_init/w16/s0/mean/metrics.csv",
         "logs/tiny/regress_kernel/entk_init_w16_s0_mean.log", changed, False),
        ("results/tiny/init/w16/s0.ckpt", lambda p: p.write_bytes(os.urandom(400)), kernel,
         "logs/tiny/entk_kernel/entk_init_w16_s0_mean.log", changed, False),
        ("results/tiny/data/order_s0.npy", lambda p: p.write_text("not an array"),
         "results/tiny/train/w16/s0/n16/metrics.csv", "logs/tiny/train/w16_s0_n16.log", changed, False),
        # a producer that wrote a bad file and recorded it: the reader's own checks still name it
        ("results/tiny/data/order_s0.npy", lambda p: None,  # still the text written above, now recorded
         "results/tiny/train/w16/s0/n16/metrics.csv", "logs/tiny/train/w16_s0_n16.log", "not an .npy array file",
         True),
    ]
    for spoilt, spoil, target, log, expected, rerecord in cases:
        spoil(tmp_path / spoilt)
        if rerecord:
            files.record_digest(tmp_path / spoilt, root=tmp_path)
        res = _snakemake(target, "--configfile", str(config), cwd=tmp_path)
        out = res.stdout + res.stderr
        text = (tmp_path / log).read_text()
        assert res.returncode != 0 and f"error: {spoilt}: " in text and expected in text, text[-2000:]
        assert "Traceback" not in text and "Traceback" not in out, out[-3000:]
    written = _files(tmp_path) - before
    assert all(p.parts[:2] in (("results", "tiny"), ("logs", "tiny")) for p in written), written


def test_a_class_whose_only_example_goes_to_validation_is_refused():
    from ntkscaling import data
    y = np.array([0] * 20 + [1] * 20 + [2])  # class 2 has one training example; a balanced draw takes it
    with pytest.raises(DatasetError, match=r"dataset.val_size=6: the validation draw takes every training example "
                                           r"of class\(es\) \[2\]"):
        data.validation_split(y, 6)
    pool, val = data.validation_split(np.array([0] * 20 + [1] * 20 + [2] * 5), 6)  # enough examples: fine
    assert 2 in np.array([0] * 20 + [1] * 20 + [2] * 5)[pool]
