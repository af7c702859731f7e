"""Atomic outputs: an interrupted write leaves neither a partial file nor a temporary behind, and every output's
digest is recorded and checked where a job reads it."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ntkscaling import files, jobs


def test_interrupted_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "kernel.npy"
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a kernel")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    files.save_npy(target, np.arange(4.0))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a kernel")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]  # outside results/: no record
    np.testing.assert_array_equal(np.load(target), np.arange(4.0))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_umask_permissions_as_open_would(tmp_path, umask):
    import os
    import stat
    old = os.umask(umask)
    try:
        files.save_json(tmp_path / "atomic.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")  # the reference: what open() gives under this umask
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


def _run_python(code, cwd):
    import os
    import subprocess
    import sys
    from conftest import ROOT
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def test_expected_fault_ends_a_job_with_its_message_and_no_traceback(tmp_path):
    code = ("from ntkscaling import files, jobs\n"
            "with jobs.log_to('job.log'):\n"
            "    print('working')\n"
            "    raise files.FileFormatError('results/x/mean.npy: truncated or corrupt .npy')\n")
    res = _run_python(code, tmp_path)
    log = (tmp_path / "job.log").read_text()
    assert res.returncode == 1
    assert "working" in log and "error: results/x/mean.npy: truncated or corrupt .npy" in log
    assert "error: results/x/mean.npy" in res.stderr  # also where Snakemake shows it
    assert "Traceback" not in log + res.stderr
    # an unexpected fault keeps its traceback (a bug must be findable)
    res = _run_python(code.replace("files.FileFormatError", "KeyError"), tmp_path)
    assert res.returncode == 1 and "Traceback" in (tmp_path / "job.log").read_text()


def test_a_job_dies_with_the_process_that_started_it(tmp_path):
    # the parent (Snakemake) starts a job (a workflow script, inside jobs.log_to), then is killed: the job
    # must not run on
    import time
    job = ("import time\nfrom ntkscaling import jobs\nwith jobs.log_to('job.log'):\n"
           "    open('started', 'w').close()\n    time.sleep(2)\n    open('finished', 'w').close()\n")
    parent = ("import os, signal, subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {job!r}])\n"
              "while not os.path.exists('started'):\n    time.sleep(0.05)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    _run_python(parent, tmp_path)
    assert (tmp_path / "started").exists()
    time.sleep(3)
    assert not (tmp_path / "finished").exists()


def test_tidy_row_types_its_fields_and_keeps_the_table_text(tmp_path):
    # from wildcards and CSV text or from numbers: the same typed row, and the same table bytes
    text = files.tidy_row(dataset="d", arch="mlp", width="16", seed="0", method="network", n="64", k="64",
                       epoch="0.25", step="4", metric="test_mse", value="0.08987641751766205")
    numbers = files.tidy_row(dataset="d", arch="mlp", width=16, seed=0, method="network", n=64, k=64, epoch=0.25,
                          step=4, metric="test_mse", value=0.08987641751766205)
    assert text == numbers and list(text) == list(files.TIDY_COLUMNS)
    assert text["width"] == 16 and text["seed"] == 0 and text["kind"] == "" and text["ridge"] == ""
    inf = files.tidy_row(dataset="d", arch="mlp", width="inf", seed=1, method="infinite_ntk", kind="mean",
                      ridge=1e-3, n=8, k=0, metric="jitter", value=0)
    assert inf["width"] == float("inf") and inf["ridge"] == "0.001" and inf["value"] == 0 and inf["epoch"] == 0
    assert files.tidy_row(dataset="d", arch="a", width=1, seed=0, method="m", n=1, k=0, metric="x", value=1,
                       ridge="tuned")["ridge"] == "tuned"
    files.write_rows(tmp_path / "t.csv", [text, inf])
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[1] == "d,mlp,16,0,network,,,64,64,0.25,4,test_mse,0.08987641751766205"
    assert lines[2] == "d,mlp,inf,1,infinite_ntk,mean,0.001,8,0,0,0,jitter,0"
    with pytest.raises(TypeError, match="metric"):
        files.tidy_row(dataset="d", arch="a", width=1, seed=0, method="m", n=1, k=0, value=1)
    with pytest.raises(ValueError):
        files.tidy_row(dataset="d", arch="a", width="wide", seed=0, method="m", n=1, k=0, metric="x", value=1)


def test_table_width_is_an_int_or_inf():
    assert files.table_width("16") == 16 and isinstance(files.table_width("16"), int)
    assert files.table_width("inf") == float("inf") and files.table_width(float("inf")) == float("inf")
    assert files.table_width(np.int64(64)) == 64


def test_every_output_records_its_digest_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    import hashlib
    monkeypatch.chdir(tmp_path)
    kernel, table = Path("results/run/kernels/mean.npy"), Path("results/run/scaling/metrics.csv")
    files.save_npy(kernel, np.arange(12.0).reshape(3, 4))
    files.write_rows(table, [{"dataset": "d", "arch": "mlp", "width": 8, "seed": 0, "method": "network", "n": n,
                           "k": n, "metric": "test_error", "value": 0.1} for n in (16, 32, 64)])
    for path in (kernel, table):  # the record holds the file's own SHA-256 (an independent hashlib reference)
        record = json.loads(files.digest_path(path).read_text())  # and its name in the run
        assert record == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "path": path.as_posix()}
    files.verify_inputs([str(kernel), [str(table)], "src/ntkscaling/files.py", "data/mine.npz"])  # others: not checked
    files.verify(tmp_path / kernel)  # an absolute path inside the working directory is the same workflow file
    files.save_npy(tmp_path / "elsewhere.npy", np.zeros(2))  # outside results/ (the API's files): no record
    assert not files.digest_path(tmp_path / "elsewhere.npy").exists()
    np.save(kernel, np.arange(12.0).reshape(3, 4)[::-1])  # other numbers, same shape and dtype
    with pytest.raises(files.FileFormatError, match="mean.npy: its content differs from what the job that wrote"):
        files.verify_inputs([str(kernel)])
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines[:-1]))  # cut at a row boundary: still a valid CSV
    with pytest.raises(files.FileFormatError, match="metrics.csv: its content differs"):
        files.verify(table)
    predictions = Path("results/run/train/w8/s0/n16/pointwise.npz")  # a prediction file
    files.save_npz(predictions, error=np.zeros((2, 5)), pred=np.ones((2, 5, 3)))
    files.verify(predictions)
    files.save_npz(Path("elsewhere.npz"), error=np.ones((2, 5)), pred=np.ones((2, 5, 3)))
    Path("elsewhere.npz").replace(predictions)  # another run's predictions moved in
    with pytest.raises(files.FileFormatError, match="pointwise.npz: its content differs"):
        files.verify_inputs([str(predictions)])
    files.digest_path(table).unlink()
    with pytest.raises(files.FileFormatError, match=r"metrics.csv: no record of the job that wrote it \(.metrics.csv"):
        files.verify(table)


def test_a_temporary_left_by_a_killed_job_goes_when_its_output_is_written_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = Path("results/run/figures/evolution.pdf")
    figure.parent.mkdir(parents=True)
    stale = figure.parent / ".evolution.pdf.k1ll3d.tmp"  # a job SIGKILLed mid-write
    stale.write_bytes(b"half a figure")
    other = figure.parent / ".other.pdf.k1ll3d.tmp"  # another output's: left to its own writer
    other.write_bytes(b"")
    with files.atomic_path(figure) as tmp:
        tmp.write_bytes(b"%PDF")
    assert not stale.exists() and other.exists() and figure.read_bytes() == b"%PDF"


def test_a_record_binds_the_file_to_its_place_and_job(tmp_path, monkeypatch):
    """Another seed's output copied in with its record is refused (the bytes are its own, the place is not);
    a record names the job that wrote it; a record that is not one (too large, a directory, the digest
    alone) is refused by name without being read whole."""
    import shutil
    monkeypatch.chdir(tmp_path)
    s0, s1 = Path("results/run/kernels/s0/mean.npy"), Path("results/run/kernels/s1/mean.npy")
    monkeypatch.setitem(files.RECORD_JOB, "rule", "entk_kernel")
    files.save_npy(s0, np.eye(3))
    files.save_npy(s1, 2 * np.eye(3))
    assert json.loads(files.digest_path(s0).read_text())["rule"] == "entk_kernel"
    shutil.copytree(s0.parent, s1.parent, dirs_exist_ok=True)  # seed 0's folder, records and all, over seed 1's
    with pytest.raises(files.FileFormatError, match=r"s1/mean.npy: its record says it was written as "
                                                    r"results/run/kernels/s0/mean.npy, not as results/run/kernels/s1"):
        files.verify_inputs([str(s1)])
    files.verify(s0)
    moved = tmp_path / "moved"  # a checkout moved with its runs: every record still holds
    shutil.copytree(tmp_path / "results", moved / "results")
    files.verify(moved / s0, root=moved)
    record = files.digest_path(s0)
    record.write_text(hashlib.sha256(s0.read_bytes()).hexdigest() + "\n")  # the older digest-only format
    with pytest.raises(files.FileFormatError, match="not a record of this workflow"):
        files.verify(s0)
    with open(record, "wb") as f:
        f.truncate(files.RECORD_MAX_BYTES + 1)
    with pytest.raises(files.FileFormatError, match=f"{files.RECORD_MAX_BYTES + 1} bytes, more than a record"):
        files.verify(s0)
    record.unlink()
    record.mkdir()
    with pytest.raises(files.FileFormatError, match="its record .mean.npy.sha256 is a directory"):
        files.verify(s0)
    with pytest.raises(files.FileFormatError, match=r"a directory where the record of mean.npy belongs"):
        files.save_npy(s0, np.eye(3))  # its producer re-running: named, and the directory is left alone
    assert record.is_dir()


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     OSError("123904 requested and 106480 written")])
def test_a_full_disk_names_the_file_and_leaves_nothing_behind(tmp_path, monkeypatch, failure):
    def full(f, array):
        f.write(b"\x93NUMPY partial")
        raise failure
    monkeypatch.setattr(np, "save", full)
    target = tmp_path / "kernels" / "mean.npy"
    with pytest.raises(files.DiskFullError, match=r"kernels/mean.npy: not written, no space left on its device \(\d+ MB"):
        files.save_npy(target, np.zeros(3))
    assert list(target.parent.iterdir()) == []  # no partial file, no temporary


def test_one_writer_per_run_whatever_path_reaches_it(tmp_path):
    """The run's writer lock lives in results/<run_name>/: a second claim through a linked path is refused
    naming the holder while it lives, and granted once it is gone (the kernel drops a dead holder's lock)."""
    import subprocess
    import sys
    import time
    run = tmp_path / "scratch" / "results" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom ntkscaling import jobs\n"
                               f"jobs.claim_run({str(run)!r})\nprint('held', flush=True)\ntime.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "home").symlink_to(tmp_path / "scratch")
        with pytest.raises(jobs.RunLockedError, match=rf"another Snakemake is writing this run \(process "
                                                      rf"{holder.pid} on "):
            jobs.claim_run(tmp_path / "home" / "results" / "tiny")
    finally:
        holder.kill()
        holder.wait()
    t0 = time.time()
    while True:
        try:
            jobs.claim_run(run)
            break
        except jobs.RunLockedError:
            assert time.time() - t0 < 10
            time.sleep(0.05)
    assert f"process {os.getpid()} " in (run / jobs.WRITER_LOCK).read_text()


def test_the_console_outlives_a_closed_pipe_and_reads_to_the_end(tmp_path):
    """`./run.sh | head`: once its reader is gone the console drops the rest and reads on, so the run goes on."""
    import subprocess
    import sys
    lines = "".join(f"a line Snakemake printed {i}\n" for i in range(200000))
    res = subprocess.run(["bash", "-c", f"{sys.executable} -m ntkscaling.console | head -1; "
                                        f"echo status ${{PIPESTATUS[0]}} >&2"],
                         input=lines, capture_output=True, text=True, timeout=60)
    assert res.stdout == "a line Snakemake printed 0\n"
    assert res.stderr.strip() == "status 0", res.stderr[-2000:]
