"""A one-node SLURM cluster on localhost for the cluster tests: munged, slurmctld and slurmd run as root
in the background with their state under a temporary folder, and are stopped by PID.

Debian's packages are installed when missing (`ensure_installed`); where that is impossible the caller
skips with the reason. Pitfalls met here (see ../shared/DESIGN.md): the Snakemake SLURM plugin strips
SLURM_* variables before `srun` inside a job, so the config must also sit at /etc/slurm/slurm.conf;
without slurmdbd there is no `sacct`, so job status comes from `squeue` with a long MinJobAge; munged
wants its socket folder at mode 0755.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by ntkscaling's cluster tests"


def ensure_installed() -> str | None:
    """Install the Debian packages when a binary is missing. Returns None when ready, else why not."""
    if all(shutil.which(b) for b in BINARIES):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get cannot be run as root here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if res.returncode != 0:
            return f"{' '.join(cmd)} failed: {res.stderr.strip()[-500:]}"
    missing = [b for b in BINARIES if not shutil.which(b)]
    return f"installed {PACKAGES} but {missing} are still missing" if missing else None


# Advertised, not enforced (CR_Core; config_overrides keeps slurmd from draining the node for having
# less): the shipped profile's paper-scale memory and GPU requests are scheduled as written.
NODE_MEM_MB = 256000
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")  # slurmd counts a GPU per file
NODE_GPUS = len(FAKE_GPU_FILES)


def write_config(state: Path, partition: str = "main") -> Path:
    host = socket.gethostname().split(".")[0]
    munge_socket = state / "munge" / "munge.socket"
    conf = f"""{MARKER}
ClusterName=ntkscaling-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldPort=6917
SlurmdPort=6918
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=3600
SchedulerParameters=defer_batch
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={NODE_MEM_MB} Gres=gpu:{NODE_GPUS} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    # Fake GPUs (no device files), so the profile's GPU requests are scheduled (torch still sees no CUDA).
    (state / "gres.conf").write_text(f"{MARKER}\nNodeName={host} Name=gpu File={','.join(FAKE_GPU_FILES)}\n")
    path = state / "slurm.conf"
    path.write_text(conf)
    return path


class Cluster:
    def __init__(self, state: Path):
        self.state = Path(state)
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.state / "slurm.conf")}

    def start(self, timeout: float = 60):
        s = self.state
        for d in ("ctld", "d", "munge"):
            (s / d).mkdir(parents=True, exist_ok=True)
        os.chmod(s / "munge", 0o755)
        key = s / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        conf = write_config(s)
        if SYSTEM_CONF.exists() and MARKER not in SYSTEM_CONF.read_text():
            raise RuntimeError(f"{SYSTEM_CONF} exists and is not ours; refusing to overwrite it")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        gres = SYSTEM_CONF.with_name("gres.conf")
        if gres.exists() and MARKER not in gres.read_text():
            raise RuntimeError(f"{gres} exists and is not ours; refusing to overwrite it")
        shutil.copyfile(conf, SYSTEM_CONF)
        shutil.copyfile(s / "gres.conf", gres)
        self._spawn("munged", ["munged", "-F", "--force", f"--key-file={key}", f"--socket={s}/munge/munge.socket",
                               f"--pid-file={s}/munge/munged.pid", f"--log-file={s}/munge/munged.log",
                               f"--seed-file={s}/munge/munged.seed"])
        self._wait(lambda: (s / "munge" / "munge.socket").exists(), timeout, "munged socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(conf)])
        self._wait(self._node_ready, timeout, "node idle in sinfo")
        return self

    def _spawn(self, name, cmd):
        log = open(self.state / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)

    def _node_ready(self) -> bool:
        for name, p in self.procs.items():
            if p.poll() is not None:
                out = (self.state / f"{name}.out").read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {p.returncode}: {out}")
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env)
        return res.returncode == 0 and res.stdout.strip() in ("idle", "mix", "alloc")

    @staticmethod
    def _wait(check, timeout, what):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if check():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def log(self, name="slurmctld") -> str:
        path = self.state / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop(self):
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        for path in (SYSTEM_CONF, SYSTEM_CONF.with_name("gres.conf")):
            with contextlib.suppress(FileNotFoundError):
                if MARKER in path.read_text():
                    path.unlink()
