"""Files: atomic output, reading arrays safely, the tidy-table format every stage of the pipeline writes, and
each output's record of what it is.

Outputs are written to a temporary name in the target folder and renamed, so an interrupted job never
leaves a partial file that a later run would trust. Each output's SHA-256 is recorded beside it
(`.<name>.sha256`, `record_digest`); a job checks every workflow file it reads against that record
(`verify_inputs`), so an altered, truncated or swapped intermediate stops the job, named, instead of being
used. What a job does around its script (its log, dying with Snakemake, progress lines) is in `jobs`.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

class InputError(ValueError):
    """A bad input the user can fix (a file, a value, a setting). Workflow jobs report it by its message
    alone, without a traceback (`log_to`); every message names the file or config key."""


class FileFormatError(InputError):
    """A file that is missing, truncated, or not the kind of file it should be."""


NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"
REWRITE = "delete it and re-run the job that writes it"


def _not_regular(mode: int) -> str | None:
    import stat
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def require_regular_file(path, what: str, error=None) -> None:
    """`path` (links followed) is a regular file: a directory, FIFO or device (a link to /dev/zero) would hang a
    read or never end it. Raises `error` (default FileFormatError) naming the file and what was expected."""
    error = error or FileFormatError
    try:
        kind = _not_regular(os.stat(path).st_mode)
    except FileNotFoundError:
        raise error(f"{path}: missing; expected {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror}); expected {what}") from None
    if kind:
        raise error(f"{path}: {kind}, not a file; expected {what}")


def require_magic(path: Path, magic: bytes, what: str) -> None:
    """The file starts with `magic`; a directory, FIFO or device (a link to /dev/zero) is refused before it is
    opened, so no read can hang or run on without end."""
    require_regular_file(path, what)
    try:
        with open(path, "rb") as f:
            head = f.read(len(magic))
    except FileNotFoundError:
        raise FileFormatError(f"{path}: missing; expected {what}") from None
    except OSError as e:
        raise FileFormatError(f"{path}: cannot be read ({e.strerror}); expected {what}") from None
    if head != magic:
        raise FileFormatError(f"{path}: not {what} (it starts with {head!r})")


def npy_header(f) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from an .npy header read from file object `f` (nothing else is read)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    return shape, dtype


def _npy_data_bytes(f) -> int:
    """The bytes of data an .npy header (read from file object `f`) announces."""
    shape, dtype = npy_header(f)
    if dtype.hasobject:
        return 0  # pickled objects: never loaded (allow_pickle=False refuses them, naming the file)
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def _announced_bytes_fit(path: Path, announced: int, available: int, kind: str, member: str = "") -> None:
    """A header may not announce more data than the file holds (no allocation of what is not there)."""
    if announced > available:
        raise FileFormatError(f"{path}: truncated or corrupt {kind} ({member}its header announces {announced} "
                              f"bytes of data, {available} are there)")


def load_npy(path, mmap: bool = False, hint: str = REWRITE) -> np.ndarray:
    """A whole .npy array (memory-mapped with `mmap`); FileFormatError naming the file when it is not one
    (truncated by a full disk, overwritten, another format, a header announcing more than the file holds).
    Never unpickles."""
    path = Path(path)
    try:
        require_magic(path, NPY_MAGIC, "an .npy array file")
        with open(path, "rb") as f:
            announced = _npy_data_bytes(f)
            _announced_bytes_fit(path, announced, os.fstat(f.fileno()).st_size - f.tell(), ".npy")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileFormatError as e:
        raise FileFormatError(f"{e}; {hint}") from None
    except (ValueError, OSError, EOFError) as e:
        raise FileFormatError(f"{path}: truncated or corrupt .npy ({e}); {hint}") from None


def load_npz(path, hint: str = REWRITE, keys=None, what: str = "an .npz archive (zip)") -> dict:
    """Every array of an .npz archive (or just `keys`, when given); FileFormatError naming the file when it
    is not a readable one. Never unpickles."""
    import zipfile
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        require_magic(path, ZIP_MAGIC, what)
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys or () if k not in z.files]
            if missing:
                raise FileFormatError(f"{path}: missing array(s) {missing}; expected {what}")
            for k in keys or z.files:  # each header against its member's size, through the archive np.load opened
                info = z.zip.getinfo(f"{k}.npy")
                with z.zip.open(info) as member:
                    announced = _npy_data_bytes(member)
                    _announced_bytes_fit(path, announced, info.file_size, ".npz", f"array {k}: ")
            return {k: z[k] for k in (keys or z.files)}
    except FileFormatError as e:
        raise FileFormatError(f"{e}{tail}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise FileFormatError(f"{path}: truncated or corrupt .npz ({type(e).__name__}: {e}){tail}") from None


# Columns of every tidy metrics table: one row per measurement.
# `kind` (mean | sum | full) and `ridge` are empty for the network's own rows.
TIDY_COLUMNS = ("dataset", "arch", "width", "seed", "method", "kind", "ridge", "n", "k", "epoch", "step",
                "metric", "value")
# The metric a training job writes (value 1, at the step it stopped) when its network diverged and the
# divergence is recorded rather than failing the job (train.on_divergence: record).
DIVERGED = "diverged"


def tidy_row(*, dataset: str, arch: str, width, seed, method: str, n, k, metric: str, value, kind: str = "",
             ridge="", epoch=0, step=0) -> dict:
    """One measurement of a tidy metrics table (TIDY_COLUMNS), every producer's one constructor. Fields are
    typed here, whatever their source (numbers, wildcards, CSV text): width an int or inf (the infinite
    kernels), seed/n/k/step ints, epoch and value numbers, ridge its table label (methods.ridge_label:
    'tuned', '0.001', or '' for the network's rows), kind '' for the network's rows."""
    from .pipeline.tags import ridge_label
    return {"dataset": str(dataset), "arch": str(arch), "width": table_width(width), "seed": int(seed),
            "method": str(method), "kind": str(kind), "ridge": ridge_label(ridge), "n": int(n), "k": int(k),
            "epoch": _number(epoch), "step": int(step), "metric": str(metric), "value": _number(value)}


def table_width(width):
    """A width as tables and per-point files hold it: an int, or inf for the infinite-width kernels."""
    return float(width) if str(width) == "inf" else int(width)


def _number(value):
    """A number as it is (so an int stays an int in the table), or the float that CSV text spells."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return value
    return float(value)


def glob_escape(name: str) -> str:
    """`name` with glob's special characters taken literally."""
    import glob
    return glob.escape(name)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds, then record
    its digest when it is a workflow file (`record_digest`, `is_workflow_file`). The file gets the
    permissions of the umask, as open() would give it (mkstemp's own are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_workflow_file(path):  # a job of the run killed mid-write (SIGKILL) left its temporary: one writer per run
        for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
    try:
        tmp = _temporary(path)
    except OSError as e:
        _name_a_full_disk(e, path)
        raise
    try:
        yield tmp
        digest = file_digest(tmp) if is_workflow_file(path) else None
        if digest:
            _record_place_is_free(path)
        os.replace(tmp, path)
        if digest:
            record_digest(path, digest)
    except OSError as e:
        _name_a_full_disk(e, path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class DiskFullError(InputError):
    """An output could not be written: no space left on its device (the message names the file)."""


def _name_a_full_disk(error: OSError, path: Path) -> None:
    """Re-raise a full disk as an error naming the file and its free space (numpy says only '123904
    requested and 106480 written')."""
    import errno
    import shutil
    if error.errno == errno.ENOSPC or "requested and" in str(error) and "written" in str(error):
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:.0f} MB free there"
        except OSError:
            free = "free space unknown"
        raise DiskFullError(f"{path}: not written, no space left on its device ({free}; {error}); free some "
                            f"space and re-run: finished jobs are kept") from None


DIGEST_SUFFIX = ".sha256"
WORKFLOW_ROOT = "results"  # the files jobs write; what a job reads from here must carry its producer's record
RECORD_MAX_BYTES = 64 * 1024  # a record is a few hundred bytes; anything larger is not one (never read whole)
# What the running job is (set by jobs.job): its rule, wildcards and the digest of its params, written into
# every record it makes, so that a record says which job made the file as well as what the bytes are.
RECORD_JOB: dict = {}


def is_workflow_file(path, root=None) -> bool:
    """Whether `path` lies under results/ of the working directory (or of `root`): a file a workflow job
    writes (and that the next job must find recorded). Files written anywhere else (the Python API's, docs/)
    get no record."""
    return record_name(path, root) is not None


def record_name(path, root=None) -> str | None:
    """`path` as a record names it: relative to the run's working directory (`root`, default the current
    one), e.g. 'results/tiny/kernels/entk_init/w16/s0/mean.npy'; None outside results/. Relative, so a
    checkout moved with its runs keeps every record valid."""
    path = Path(path)
    base = Path(root) if root is not None else Path.cwd()
    if path.is_absolute() or root is not None:
        try:
            path = Path(os.path.abspath(path)).relative_to(os.path.abspath(base))
        except ValueError:
            return None
    return path.as_posix() if path.parts[:1] == (WORKFLOW_ROOT,) else None


def digest_path(path) -> Path:
    """Where the record of `path` lives: `.<name>.sha256` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{DIGEST_SUFFIX}")


def file_digest(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def params_digest(params: dict) -> str:
    """A job's params (its config values) as one digest: what a record says the file was made from."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_digest(path, digest: str | None = None, root=None) -> None:
    """Record what the file at `path` (written by a job) is, beside it, atomically: the SHA-256 of its bytes,
    its name in the run (`record_name`) and the job that made it (RECORD_JOB: rule, wildcards, params)."""
    path = Path(path)
    target = _record_place_is_free(path)
    record = {"sha256": digest or file_digest(path), "path": record_name(path, root) or path.name, **RECORD_JOB}
    tmp = _temporary(target)
    try:
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _record_place_is_free(path: Path) -> Path:
    """Where `path`'s record goes, refused (and left alone) when something other than a file is there."""
    target = digest_path(path)
    if os.path.lexists(target) and _not_regular(os.lstat(target).st_mode):
        raise FileFormatError(f"{target}: {_not_regular(os.lstat(target).st_mode)} where the record of "
                              f"{path.name} belongs; move it away (a record is a small file the job writes)")
    return target


def read_record(path) -> dict:
    """The record of the workflow file `path` (FileFormatError naming it when missing, not a small regular
    file, or not a record of this workflow's format). Read with a size limit: never a whole large file."""
    path, record = Path(path), digest_path(path)
    untrusted = f"so {path.name} cannot be trusted; {REWRITE}"
    try:
        st = os.stat(record)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no record of the job that wrote it ({record.name} is missing), "
                              f"{untrusted}") from None
    kind = _not_regular(st.st_mode)
    if kind or st.st_size > RECORD_MAX_BYTES:
        what = kind or f"{st.st_size} bytes, more than a record's {RECORD_MAX_BYTES}"
        raise FileFormatError(f"{path}: its record {record.name} is {what}, {untrusted}")
    with open(record, "rb") as f:
        text = f.read(RECORD_MAX_BYTES)
    try:
        out = json.loads(text)
        if not (isinstance(out, dict) and isinstance(out.get("sha256"), str) and isinstance(out.get("path"), str)):
            raise ValueError
    except ValueError:
        raise FileFormatError(f"{path}: its record {record.name} is not a record of this workflow (a JSON object "
                              f"with sha256 and path; an older version wrote the digest alone), {untrusted}") from None
    return out


def verify(path, root=None) -> None:
    """Refuse a workflow file that is not what its producer recorded: other bytes (altered, truncated, replaced
    by another file), or bytes recorded for another place (a folder of another seed, width or run copied in
    with its records), or no record at all (not written by a job of this workflow). `root`: the run's
    working directory, when it is not the current one."""
    path = Path(path)
    record = read_record(path)
    here = record_name(path, root)
    if record["path"] != here:
        raise FileFormatError(f"{path}: its record says it was written as {record['path']}, not as {here}: a "
                              f"file copied or moved in from another output (another seed, width, method or "
                              f"run) is not this one; {REWRITE}")
    if file_digest(path) != record["sha256"]:
        raise FileFormatError(f"{path}: its content differs from what the job that wrote it recorded "
                              f"(sha256 in {digest_path(path).name}): altered, truncated or replaced; {REWRITE}")


def verify_inputs(inputs) -> None:
    """`verify` every file among a job's inputs that a workflow job wrote (under results/); code inputs and
    the user's data files are not job outputs and are not checked here."""
    for item in inputs:
        for name in (item if isinstance(item, (list, tuple)) else [item]):
            path = Path(str(name))
            if is_workflow_file(path) and path.is_file():
                verify(path)


def save_npz(path, **arrays):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_npy(path, array):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def save_json(path, obj):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def write_rows(path, rows, columns=TIDY_COLUMNS):
    """Write dict rows as CSV with a fixed column order (missing fields left empty)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise")
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in columns})


def code_version(package_dir=None) -> str:
    """Hash of this library's source files (Python, the native kernel's C, the schema) in every subpackage:
    which code produced an output, with or without git. `package_dir`: another copy of the package."""
    import hashlib
    h = hashlib.sha256()
    root = Path(package_dir) if package_dir else Path(__file__).parent
    sources = (p for p in root.rglob("*") if p.suffix in (".py", ".c", ".yaml") and "__pycache__" not in p.parts)
    for path in sorted(sources):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def provenance(config: dict | None = None) -> dict:
    """Code version, library versions and host (and the run's config, when given), recorded next to outputs."""
    from importlib import metadata  # versions without importing the (slow) packages themselves

    out = {"code_version": code_version(), "python": platform.python_version(), "host": platform.node()}
    if config is not None:
        out["config"] = config
    for package in ("numpy", "scipy", "torch", "pytorch-lightning", "snakemake"):
        try:
            out[package.replace("-", "_")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package.replace("-", "_")] = None
    return out
