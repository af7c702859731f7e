"""hostmem: freed blocks are kept for reuse inside keep_freed_memory, in a fresh process so that no earlier
allocation has moved glibc's thresholds.

What is measured is glibc's own account of free heap memory after the eNTK's pattern (chunk-sized tensors,
all freed): kept for the next chunk, or handed back to the system (each reuse then page-faults again). Page
fault counts themselves vary between runs with what torch allocates at start-up; this does not."""
import os
import subprocess
import sys

import pytest

from ntkscaling.kernels.empirical import hostmem

PATTERN = r"""
import ctypes, sys, torch, contextlib
from ntkscaling import hostmem

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
ctx = hostmem.keep_freed_memory() if sys.argv[1] == "keep" else contextlib.nullcontext()
with ctx:
    ts = [torch.ones(1 << 20, dtype=torch.float64) for _ in range(10)]  # 10 x 8 MB, then all freed
    del ts
    print(libc.mallinfo2().fordblks >> 20)  # MB of free memory the heap keeps
"""


def _kept_mb(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, check=True,
                         env=env)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(hostmem._LIBC is None or not hasattr(hostmem._LIBC, "mallinfo2"),
                    reason="glibc >= 2.33 is needed (mallopt, mallinfo2)")
def test_freed_memory_is_reused_inside_the_block():
    assert _kept_mb("keep") >= 80   # all of it kept for the next chunk...
    assert _kept_mb("default") < 8  # ...where glibc's defaults unmap it (measured: 80 and 0 MB)


def test_keep_freed_memory_restores_on_error():
    with pytest.raises(RuntimeError):
        with hostmem.keep_freed_memory():
            raise RuntimeError("boom")


def test_user_malloc_settings_are_left_alone(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, *args):
            calls.append(args)

        def malloc_trim(self, *args):
            calls.append(args)
    monkeypatch.setattr(hostmem, "_LIBC", FakeLibc())
    for k in [k for k in os.environ if k.startswith("MALLOC_")] + ["GLIBC_TUNABLES"]:
        monkeypatch.delenv(k, raising=False)
    with hostmem.keep_freed_memory():
        pass
    assert len(calls) == 4  # two settings, the restored trim threshold, the trim
    for env in ({"MALLOC_TRIM_THRESHOLD_": "0"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}):
        calls.clear()
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            with hostmem.keep_freed_memory():
                pass
        assert calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MAP_POPULATE is Linux's")
def test_populated_buffer_is_resident_at_creation_and_freed_with_its_tensor():
    import gc

    import psutil
    import torch
    proc, numel = psutil.Process(), 32 << 20  # 128 MB of float32
    rss = proc.memory_info().rss
    lazy = torch.empty(numel)  # the control: an ordinary allocation is mapped on first touch only
    assert proc.memory_info().rss - rss < 64 << 20
    del lazy
    rss = proc.memory_info().rss
    buf = hostmem.populated_empty(numel)
    assert buf.shape == (numel,) and buf.dtype == torch.float32
    assert proc.memory_info().rss - rss > 120 << 20  # every page mapped before any write
    view = buf[-8:]
    del buf
    gc.collect()
    view.fill_(2.0)  # a view keeps the mapping alive
    assert view.sum().item() == 16.0
    del view
    gc.collect()
    assert proc.memory_info().rss - rss < 64 << 20  # unmapped with the last tensor
    small = hostmem.populated_empty(1000, torch.float64)
    assert small.shape == (1000,) and small.dtype == torch.float64
