"""A single-node SLURM cluster for tests/test_slurm.py, or by hand (as root, with slurm-wlm and munge):

    python tests/slurm_cluster.py start /tmp/skrr-slurm     # prints: export SLURM_CONF=/tmp/skrr-slurm/slurm.conf
    python tests/slurm_cluster.py stop /tmp/skrr-slurm

munged (reused when one already answers), slurmctld and slurmd, with a slurm.conf generated in the
folder from `nproc` and `free`: one node, one partition `debug`, no accounting (as many small
clusters), free ports, state and logs in the folder. Only the daemons started here are stopped.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
MUNGE_KEY = Path("/etc/munge/munge.key")


def missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def free_mib() -> int:
    """The memory the node offers jobs: 90% of what `free` counts as available."""
    line = next(ln for ln in subprocess.run(["free", "-m"], capture_output=True, text=True, check=True).stdout.splitlines()
                if ln.startswith("Mem:"))
    return int(int(line.split()[6]) * 0.9)


def munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return cred.returncode == 0 and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True,
                                                      timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def start_munge(folder: Path) -> None:
    if munge_works():
        return
    if not MUNGE_KEY.is_file():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True)
    (folder / "munged.started").write_text("munged was started by slurm_cluster.py\n")
    wait(munge_works, 30, "munged")


def slurm_conf(folder: Path) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""ClusterName=skrrtest
SlurmctldHost={host}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MessageTimeout=30
NodeName={host} CPUs={os.cpu_count()} RealMemory={free_mib()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def wait(ok, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not ok():
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not come up within {seconds:.0f} s")
        time.sleep(0.5)


def node_idle(env: dict) -> bool:
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
    return p.returncode == 0 and p.stdout.strip() in ("idle", "mixed", "allocated")


def start(folder: str | os.PathLike) -> dict:
    """Start the cluster; returns the environment (SLURM_CONF) its commands need."""
    folder = Path(folder).resolve()
    if missing():
        raise RuntimeError(f"missing {', '.join(missing())}: apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        raise RuntimeError("starting slurmd needs root")
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    start_munge(folder)
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld", "-i"], check=True, env=env)
    subprocess.run(["slurmd"], check=True, env=env)
    wait(lambda: node_idle(env), 60, f"the node (see {folder}/slurmctld.log, {folder}/slurmd.log)")
    return env


def stop(folder: str | os.PathLike) -> None:
    """Stop the daemons started in `folder` (by their pid files); munged only if started here."""
    folder = Path(folder).resolve()
    for name in ("slurmd", "slurmctld"):
        pid_file = folder / f"{name}.pid"
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
    if (folder / "munged.started").is_file():
        pid_file = Path("/run/munge/munged.pid")
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    if sys.argv[1] == "start":
        print(f"export SLURM_CONF={start(sys.argv[2])['SLURM_CONF']}")
    else:
        stop(sys.argv[2])
