"""What a workflow job does around its script: its log (everything it prints, an expected fault reported by
its message alone), its inputs checked against their producers' records before any work, dying with the
Snakemake that started it, and throttled progress lines for long loops."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from . import files
from .files import InputError, verify_inputs


def die_with_parent() -> None:
    """Have the kernel kill this process when the process that started it dies (Linux): a workflow job
    must not keep writing outputs after Snakemake itself was killed. SIGKILL, because Lightning takes SIGTERM
    over during training (and ignores it outside SLURM); outputs are written atomically, so a job killed
    mid-write leaves nothing a later run trusts. Elsewhere a no-op."""
    import ctypes
    import signal
    import sys
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    if parent == 1:  # already orphaned (Snakemake died while this job started): do not run on alone
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def job(smk):
    """A workflow job: everything it prints goes to its log (`log_to`), and every input a job of the workflow
    wrote is checked against its producer's record (`verify_inputs`) before any work. Every output it
    writes is recorded as made by this job (its rule, wildcards and params: files.RECORD_JOB)."""
    with log_to(smk.log[0]) as f:
        verify_inputs(smk.input)
        files.RECORD_JOB.clear()
        files.RECORD_JOB.update(job_identity(smk))
        yield f


def job_identity(smk) -> dict:
    """What a job is, as its records say: rule, wildcards and the digest of its params."""
    def named(items):
        return {str(k): v for k, v in items}
    return {"rule": str(getattr(smk, "rule", "")), "wildcards": named(smk.wildcards.items()),
            "params": files.params_digest(named(smk.params.items()))}


@contextlib.contextmanager
def log_to(path):
    """Send everything a workflow script prints (Python and C level, Lightning's loggers included) to its
    log file, tracebacks included; an InputError (a bad file or value) is reported by its message alone and
    ends the job with exit status 1. The job stops if Snakemake dies (`die_with_parent`)."""
    import logging
    import sys
    import traceback

    die_with_parent()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
        try:
            yield f
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            failed = e
        except BaseException:
            traceback.print_exc()
            raise
        else:
            failed = None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        raise SystemExit(1)


PROGRESS_SECONDS = 10.0  # at most one progress line per this many seconds (and always the last)


class Progress:
    """Throttled progress of a loop of `total` steps: calling it with the steps done so far prints
    '<what> done/total elapsed Xs eta Ys' through `report` at most every PROGRESS_SECONDS, and at the end.
    Silent when `report` is None or the loop has a single step."""

    def __init__(self, report, what: str, total: int):
        self.report, self.what, self.total = report, what, total
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int):
        if self.report is None or self.total <= 1:
            return
        now = time.perf_counter()
        if now - self.last >= PROGRESS_SECONDS or done >= self.total:
            self.last, elapsed = now, now - self.t0
            self.report(f"{self.what} {done}/{self.total} elapsed {elapsed:.0f}s "
                        f"eta {elapsed / max(done, 1) * (self.total - done):.0f}s")


WRITER_LOCK = ".writer.lock"  # in results/<run_name>/: the run's one writer, whatever path or command
_held = []  # the open lock of this process's run (kept open, so held, until the process ends)


class RunLockedError(InputError):
    """Another live Snakemake writes this run's results."""


def claim_run(run_dir) -> None:
    """Take the run's writer lock (an flock on results/<run_name>/.writer.lock, held until this process ends),
    or raise RunLockedError naming who holds it. The lock lives with the results, so it is one lock whatever
    path reaches them (a symlinked checkout, two checkouts sharing results/ through a link) and however
    Snakemake was started (./run.sh, snakemake, python -m snakemake, a cluster profile): the Snakefile takes
    it when a run starts. The kernel drops it when the holder dies, so a killed run leaves nothing stale."""
    import fcntl
    import socket
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / WRITER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 1024, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunLockedError(f"{run_dir}: another Snakemake is writing this run ({holder}); wait for it to "
                             f"finish or stop it: one run has one writer") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} in {os.getcwd()}\n".encode(), 0)
    _held.append(fd)
