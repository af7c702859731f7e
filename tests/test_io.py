"""Atomic outputs: an interrupted write leaves neither a partial file nor a temporary behind."""
import numpy as np
import pytest

from ntkscaling import io


def test_interrupted_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "kernel.npy"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a kernel")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    io.save_npy(target, np.arange(4.0))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a kernel")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]
    np.testing.assert_array_equal(np.load(target), np.arange(4.0))
