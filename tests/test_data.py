"""Every dataset format on small files made here, corrupt files, nested subsets and standardization."""
import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from ntkscaling import data

from conftest import write_imagefolder


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_mnist(root, gz: bool, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 255, (n_train, 8, 8)), "y_train": np.arange(n_train) % 10,
              "x_test": rng.integers(0, 255, (n_test, 8, 8)), "y_test": np.arange(n_test) % 10}
    for key, stem in data.MNIST_FILES.items():
        raw = _idx(arrays[key])
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz)
    x_tr, y_tr, x_te, y_te = data.load_raw("mnist", tmp_path)
    assert x_tr.shape == (40, 1, 8, 8) and x_te.shape == (20, 1, 8, 8)
    np.testing.assert_array_equal(x_tr[:, 0], arrays["x_train"])
    np.testing.assert_array_equal(y_te, arrays["y_test"])


def test_mnist_truncated_file_is_named(tmp_path):
    _write_mnist(tmp_path, gz=False)
    f = tmp_path / data.MNIST_FILES["x_train"]
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(data.DatasetError, match="train-images-idx3-ubyte.*header says"):
        data.load_raw("mnist", tmp_path)


def test_mnist_missing_file_is_named(tmp_path):
    _write_mnist(tmp_path, gz=True)
    (tmp_path / (data.MNIST_FILES["y_test"] + ".gz")).unlink()
    with pytest.raises(data.DatasetError, match="t10k-labels-idx1-ubyte.*missing"):
        data.load_raw("mnist", tmp_path)


def test_labels_out_of_range_are_refused(tmp_path):
    # MNIST (like CIFAR-10 and digits) has labels 0..9: a label 12 means a corrupt or foreign file
    _write_mnist(tmp_path, gz=False)
    f = tmp_path / data.MNIST_FILES["y_test"]
    raw = bytearray(f.read_bytes())
    raw[-1] = 12
    f.write_bytes(bytes(raw))
    with pytest.raises(data.DatasetError, match=r"'mnist' .*test labels must be in 0..9, found 12"):
        data.load_raw("mnist", tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(6, 3)), y_train=np.array([0, 1, 2, 0, -1, 1]),
             x_test=rng.normal(size=(2, 3)), y_test=np.array([0, 1]))
    with pytest.raises(data.DatasetError, match=r"'npz' .*train labels must be >= 0, found -1"):
        data.load_raw("npz", tmp_path, file="d.npz")


def _write_npz(path, nhwc=True):
    rng = np.random.default_rng(1)
    shape = (30, 4, 4, 3) if nhwc else (30, 5)
    np.savez(path, x_train=rng.normal(size=shape), y_train=np.arange(30) % 3,
             x_test=rng.normal(size=(12,) + shape[1:]), y_test=np.arange(12) % 3)


def test_npz_images_and_vectors(tmp_path):
    _write_npz(tmp_path / "dataset.npz")
    x_tr, y_tr, x_te, y_te = data.load_raw("npz", tmp_path)
    raw = np.load(tmp_path / "dataset.npz")
    assert x_tr.shape == (30, 3, 4, 4)
    np.testing.assert_allclose(x_tr, raw["x_train"].transpose(0, 3, 1, 2).astype(np.float32))
    _write_npz(tmp_path / "vec.npz", nhwc=False)
    x_tr, *_ = data.load_raw("npz", tmp_path, file="vec.npz")
    assert x_tr.shape == (30, 5)


def test_npz_corrupt_and_incomplete(tmp_path):
    (tmp_path / "dataset.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(data.DatasetError, match=r"dataset.npz: not an .npz with x_train.* \(it starts with b'this"):
        data.load_raw("npz", tmp_path)
    np.savez(tmp_path / "dataset.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(3, int))
    with pytest.raises(data.DatasetError, match=r"missing array\(s\) \['x_test', 'y_test'\]"):
        data.load_raw("npz", tmp_path)
    np.savez(tmp_path / "dataset.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(4, int),
             x_test=np.zeros((3, 2)), y_test=np.zeros(3, int))
    with pytest.raises(data.DatasetError, match="y_train"):
        data.load_raw("npz", tmp_path)


def test_imagefolder(tmp_path):
    write_imagefolder(tmp_path, {"train": 3, "test": 2}, seed=2)
    x_tr, y_tr, x_te, y_te = data.load_raw("imagefolder", tmp_path)
    assert x_tr.shape == (6, 3, 8, 8) and list(y_tr) == [0, 0, 0, 1, 1, 1] and len(y_te) == 4
    (tmp_path / "test" / "dog" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(data.DatasetError, match="broken.png: not a readable image"):
        data.load_raw("imagefolder", tmp_path)


def _cifar_tarball(path, batches):
    with tarfile.open(path, "w:gz") as tf:
        for name, obj in batches.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))


def _cifar_batch(n, rng):
    """n random images; labels cycle through the 10 classes from a random start (every class present once
    the five training batches are together)."""
    start = int(rng.integers(0, 10))
    return {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": [(start + i) % 10 for i in range(n)]}


def test_cifar10_tarball(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    batches = {f"data_batch_{i}": _cifar_batch(4, rng) for i in range(1, 6)}
    batches["data_batch_1"][b"labels"] = [0, 1, 2, 3]  # with the others' labels, every class is present
    batches["data_batch_2"][b"labels"] = [4, 5, 6, 7]
    batches["data_batch_3"][b"labels"] = [8, 9, 0, 1]
    batches["test_batch"] = _cifar_batch(5, rng)
    tarball = tmp_path / data.CIFAR10_TARBALL
    _cifar_tarball(tarball, batches)
    # the official md5 is checked: our small file fails it, with a message naming the file
    with pytest.raises(data.DatasetError, match="cifar-10-python.tar.gz: md5 .* does not match"):
        data.load_raw("cifar10", tmp_path)
    monkeypatch.setattr(data.facts, "CIFAR10_MD5", hashlib.md5(tarball.read_bytes()).hexdigest())
    x_tr, y_tr, x_te, y_te = data.load_raw("cifar10", tmp_path)
    assert x_tr.shape == (20, 3, 32, 32) and x_te.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(x_tr[0].reshape(-1), batches["data_batch_1"][b"data"][0])
    assert list(y_te) == list(batches["test_batch"][b"labels"])


def test_a_cifar10_tarball_or_mnist_file_that_is_a_device_is_refused_unread(tmp_path):
    (tmp_path / data.CIFAR10_TARBALL).symlink_to("/dev/zero")  # an md5 of it would never end
    with pytest.raises(data.DatasetError, match="cifar-10-python.tar.gz: a character device, not a file"):
        data.load_raw("cifar10", tmp_path)
    import os
    os.mkfifo(tmp_path / "train-images-idx3-ubyte")  # reading it would hang
    with pytest.raises(data.DatasetError, match="train-images-idx3-ubyte: a FIFO"):
        data.load_raw("mnist", tmp_path)


class _Exploit:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_code_in_pickle(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    batches = {f"data_batch_{i}": _cifar_batch(2, rng) for i in range(1, 6)}
    marker = tmp_path / "code-ran"
    batches["test_batch"] = {b"data": _Exploit(marker), b"labels": [0]}
    tarball = tmp_path / data.CIFAR10_TARBALL
    _cifar_tarball(tarball, batches)
    monkeypatch.setattr(data.facts, "CIFAR10_MD5", hashlib.md5(tarball.read_bytes()).hexdigest())
    with pytest.raises(data.DatasetError, match="refusing to load posix.system|refusing to load os.system"):
        data.load_raw("cifar10", tmp_path)
    assert not marker.exists()


def test_cifar10_missing_says_where_to_put_it(tmp_path):
    with pytest.raises(data.DatasetError, match="cifar-10-python.tar.gz: missing.*download"):
        data.load_raw("cifar10", tmp_path)


def test_digits_builtin():
    x_tr, y_tr, x_te, y_te = data.load_raw("digits", test_size=300)
    assert x_tr.shape == (1497, 1, 8, 8) and x_te.shape == (300, 1, 8, 8)
    assert set(np.unique(y_tr)) == set(range(10))


@pytest.mark.parametrize("balanced", [True, False])
def test_nested_subsets_are_nested_and_seeded(balanced):
    y = np.repeat(np.arange(4), [50, 30, 40, 60])
    order = data.nested_order(y, seed=5, balanced=balanced)
    assert sorted(order) == list(range(len(y)))  # a permutation
    np.testing.assert_array_equal(order, data.nested_order(y, seed=5, balanced=balanced))
    assert not np.array_equal(order, data.nested_order(y, seed=6, balanced=balanced))
    for n1, n2 in ((8, 16), (16, 100), (100, 180)):
        assert set(order[:n1]) <= set(order[:n2])


def test_balanced_prefixes():
    y = np.repeat(np.arange(3), [100, 20, 50])
    order = data.nested_order(y, seed=0, balanced=True)
    for n in (3, 12, 30, 60):
        counts = np.bincount(y[order[:n]], minlength=3)
        assert counts.max() - counts.min() <= 1, (n, counts)
    counts = np.bincount(y[order[:90]], minlength=3)  # class 1 is exhausted at 20
    assert counts[1] == 20 and abs(counts[0] - counts[2]) <= 1


def test_prepare_standardizes_with_pool_statistics_and_selects_classes():
    d = data.prepare("digits", test_size=100, classes=[3, 7], val_size=40)
    assert set(np.unique(d["y_train"])) == {0, 1} and int(d["n_classes"]) == 2
    assert len(d["y_test"]) == 100 and set(np.unique(d["y_test"])) == {0, 1}
    x = d["x_train"].astype(np.float64)
    assert abs(x.mean()) < 1e-5
    assert abs(x.std() - 1) < 1e-4  # one channel: pool std is 1
    # subsets are slices of the same standardized pool: a subset's statistics differ from (0, 1)
    assert abs(x[:20].mean()) > 1e-4


def test_downsample_averages_blocks():
    x = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
    out = data.downsample(x, 2)
    assert out.shape == (2, 3, 2, 4) and out.dtype == np.float32
    assert out[1, 2, 1, 3] == pytest.approx(x[1, 2, 2:4, 6:8].mean())
    assert data.downsample(x, 1) is x
    with pytest.raises(data.DatasetError, match="must divide"):
        data.downsample(x, 3)
    with pytest.raises(data.DatasetError, match="needs images"):
        data.downsample(x.reshape(2, -1), 2)


def test_validation_set_is_fixed_balanced_and_disjoint_from_pool_and_test():
    d = data.prepare("digits", test_size=300, val_size=200)
    x_tr, y_tr, x_te, _ = data.split("digits", test_size=300)
    pool_idx, val_idx = data.validation_split(y_tr, 200)
    assert len(set(pool_idx) & set(val_idx)) == 0 and len(pool_idx) + len(val_idx) == len(y_tr)
    np.testing.assert_array_equal(d["val_index"], val_idx)
    assert len(d["y_val"]) == 200 and len(d["y_train"]) == len(y_tr) - 200
    assert np.bincount(d["y_val"]).max() - np.bincount(d["y_val"]).min() <= 1  # class-balanced
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    assert not rows(d["x_val"]) & rows(d["x_train"]) and not rows(d["x_val"]) & rows(d["x_test"])
    again = data.prepare("digits", test_size=300, val_size=200)
    np.testing.assert_array_equal(again["x_val"], d["x_val"])  # fixed: no run seed involved
    for seed in (0, 1):  # every nested subset is drawn from the pool, never from the validation set
        order = data.nested_order(d["y_train"], seed)
        x, y = data.kernel_rows(d, order, 64)
        b = data.row_blocks(64, d)
        np.testing.assert_array_equal(x[b["val"]], d["x_val"])
        np.testing.assert_array_equal(y[b["test"]], d["y_test"])
        assert not rows(x[b["train"]]) & rows(d["x_val"])
    with pytest.raises(data.DatasetError, match="dataset.val_size=2000"):
        data.prepare("digits", test_size=300, val_size=2000)


def test_pool_rows_are_the_next_points_of_the_order_after_the_test_rows():
    d = data.prepare("digits", test_size=300, val_size=200)
    order = data.nested_order(d["y_train"], 0)
    x0, y0 = data.kernel_rows(d, order, 64)
    x, y = data.kernel_rows(d, order, 64, pool=100)
    b = data.row_blocks(64, d, data.pool_size(order, 64, 100))
    np.testing.assert_array_equal(x[:len(x0)], x0)  # the rows without a pool are unchanged, first
    np.testing.assert_array_equal(x[b["pool"]], d["x_train"][order[64:164]])
    np.testing.assert_array_equal(y[b["pool"]], d["y_train"][order[64:164]])
    assert b["pool"].start == b["test"].stop == len(y0) and b["pool"].stop == len(y)
    # the pool lies beyond every training set the kernel serves (n <= n_max), and holds only what the
    # training pool has beyond n_max
    assert not set(order[64:164]) & set(order[:64])
    n_all = len(order)
    assert data.pool_size(order, n_all - 10, 100) == 10 and data.pool_size(order, n_all, 100) == 0
    assert len(data.kernel_rows(d, order, n_all - 10, pool=100)[1]) == n_all - 10 + 500 + 10


def test_stripe_is_the_planted_model_deterministic_balanced_and_along_its_direction():
    from ntkscaling import planted
    x, y, xt, yt = planted.stripe(3000, dim=6, train_size=20000, direction=[0, 3, 0, 4, 0, 0], seed=5)
    assert x.shape == (20000, 6) and xt.shape == (3000, 6) and x.dtype == np.float32 and y.dtype == np.int64
    u = np.array([0, 0.6, 0, 0.8, 0, 0])
    np.testing.assert_array_equal(y, np.abs(x.astype(np.float64) @ u) > planted.STRIPE_MEDIAN)
    assert abs(y.mean() - 0.5) < 0.02 and abs(yt.mean() - 0.5) < 0.04  # the median of |N(0,1)| balances them
    assert abs(x.std() - 1) < 0.02 and abs(x.mean()) < 0.02
    again = planted.stripe(3000, dim=6, train_size=20000, direction=[0, 3, 0, 4, 0, 0], seed=5)
    np.testing.assert_array_equal(x, again[0])
    # the test size and the direction leave the training inputs alone
    np.testing.assert_array_equal(planted.stripe(10, dim=6, train_size=20000, direction=1, seed=5)[0], x)
    # a random direction is a unit vector fixed by the seed
    u1, u2 = planted.stripe_direction(6, None, 1), planted.stripe_direction(6, None, 2)
    assert np.linalg.norm(u1) == pytest.approx(1) and not np.allclose(u1, u2)
    np.testing.assert_array_equal(u1, planted.stripe_direction(6, None, 1))
    np.testing.assert_array_equal(planted.stripe_direction(6, 2, 0), np.eye(6)[2])
    wide = planted.stripe(100, dim=4, train_size=5000, threshold=1.5, seed=0)[1]
    assert wide.mean() == pytest.approx(2 * 0.0668, abs=0.02)  # P(|z| > 1.5)
    for bad in (7, [1, 2], [0, 0, 0, 0, 0, 0]):
        with pytest.raises(ValueError, match="dataset.planted.direction"):
            planted.stripe_direction(6, bad, 0)


def test_stripe_prepares_like_any_dataset():
    d = data.prepare("stripe", test_size=200, val_size=100, planted={"dim": 8, "train_size": 1000, "seed": 3})
    assert d["x_train"].shape == (900, 8) and d["x_val"].shape == (100, 8) and d["x_test"].shape == (200, 8)
    assert np.bincount(d["y_test"]).tolist() == [100, 100] and int(d["n_classes"]) == 2
    order = data.nested_order(d["y_train"], 0)
    assert set(order[:64]) < set(order[:128])
    with pytest.raises(data.DatasetError, match="dataset.planted.direction"):
        data.prepare("stripe", test_size=20, val_size=10, planted={"dim": 3, "train_size": 100, "direction": 5})


def test_builtin_facts_are_what_the_loader_reads():
    """The one table of built-in dataset facts (data.BUILTIN: what the config check relies on before any
    job) against the data itself: digits' shape and examples per class in its training pool."""
    import numpy as np
    x_train, y_train, x_test, y_test = data.load_digits_raw(test_size=500)
    facts = data.BUILTIN["digits"]  # digits: counts of all 1797 images (ntkscaling draws the test set)
    assert tuple(x_train.shape[1:]) == facts.shape and facts.classes == 10 and facts.test_counts is None
    assert tuple(np.bincount(np.r_[y_train, y_test], minlength=10)) == facts.train_counts
    assert data.label_problem(facts.train_counts, "digits") is None
    assert "classes [1] (1) have no training example" in data.label_problem([3, 0, 2], "x")
