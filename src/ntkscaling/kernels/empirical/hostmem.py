"""Host-memory behaviour of the eNTK engine on Linux (the infinite kernels reuse their own buffers).

The engine allocates tens of MB per chunk and GBs of feature storage. With glibc's defaults every block
above the mmap threshold is mapped on allocation and unmapped on free, so each chunk pays its page faults
again. `keep_freed_memory()`: while the engine runs, blocks up to 32 MB come from the heap and freed memory
is kept for reuse instead of being trimmed; on exit the trim threshold is restored and the heap trimmed.
A no-op elsewhere (other C libraries, macOS) and where the environment tunes malloc itself; it never
changes any number computed. `populated_empty(numel)`: a large CPU buffer whose pages are all mapped by the
one mmap call that creates it (MAP_POPULATE), instead of one page fault at a time on first touch inside the
compute. Transparent huge pages were tried and are not used (their pages are zeroed and compacted
synchronously). What each of these saves is measured in benchmarks/README.md (host memory).
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import sys

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20      # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD_DEFAULT = 128 << 10


def _glibc():
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def user_tuned_malloc() -> bool:
    """Whether the environment tunes glibc's malloc itself (MALLOC_*_ variables or glibc.malloc tunables):
    then its settings are left alone."""
    return any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or \
        "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


@contextlib.contextmanager
def keep_freed_memory():
    """Reuse freed blocks inside the block; the mmap threshold stays at 32 MB afterwards (the value glibc's
    own dynamic threshold reaches in any process that frees large tensors)."""
    if _LIBC is None or user_tuned_malloc():
        yield
        return
    _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    _LIBC.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_DEFAULT)
        _LIBC.malloc_trim(0)


POPULATE_MIN_BYTES = 64 << 20  # smaller buffers: torch.empty (a few faults, or reused heap memory)


def populated_empty(numel: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """An uninitialised 1-D tensor of `numel` elements; on a Linux CPU and from 64 MB up, backed by an
    anonymous mapping populated at creation (freed with the last tensor viewing it). Elsewhere, or when
    the mapping fails, torch.empty."""
    nbytes = numel * dtype.itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if torch.device(device).type != "cpu" or populate is None or nbytes < POPULATE_MIN_BYTES:
        return torch.empty(numel, dtype=dtype, device=device)
    try:
        region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except OSError:
        return torch.empty(numel, dtype=dtype, device=device)
    return torch.frombuffer(region, dtype=dtype)  # the tensor keeps the mapping alive
