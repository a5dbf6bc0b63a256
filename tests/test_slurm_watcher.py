"""experiments/runner/slurm.py without a cluster: scontrol's job list parsed as submitit names jobs, and the
watcher on a cluster whose sacct fails (fake sacct/scontrol on PATH): states come from scontrol,
a job the controller no longer lists counts as ended, and no "Bypassing sacct error" is logged.
(tests/test_slurm.py runs it against a real cluster.)"""
import logging
import os
import stat

from skrr.experiments.runner.slurm import SlurmStates, make_watcher, scontrol_states

SCONTROL = """JobId=7 JobName=a JobState=RUNNING Partition=debug NodeList=n1 Command=/x/y z
JobId=8 ArrayJobId=5 ArrayTaskId=0 JobName=b JobState=COMPLETED NodeList=n1
JobId=5 ArrayJobId=5 ArrayTaskId=1-3,6%2 JobName=b JobState=PENDING NodeList=(null)
"""


def test_scontrol_lines_become_submitit_job_ids():
    states = scontrol_states(SCONTROL + "No jobs in the system\n")
    assert states["7"]["State"] == "RUNNING" and states["7"]["NodeList"] == "n1"
    assert states["5_0"]["State"] == "COMPLETED"
    assert sorted(k for k in states if k.startswith("5_")) == ["5_0", "5_1", "5_2", "5_3", "5_6"]
    assert all(states[f"5_{i}"]["State"] == "PENDING" for i in (1, 2, 3, 6))


def fake(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_without_accounting_states_come_from_scontrol(tmp_path, monkeypatch, caplog):
    fake(tmp_path, "sacct", "echo 'Slurm accounting storage is disabled' >&2; exit 1\n")
    fake(tmp_path, "scontrol", f"cat <<'EOF'\n{SCONTROL}EOF\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    watcher = make_watcher(delay_s=0)
    with caplog.at_level(logging.DEBUG):
        for job in ("7", "5_0", "5_2", "9"):
            watcher.register_job(job)
        watcher.update()
        watcher.update()
    assert watcher.get_state("7", mode="cache") == "RUNNING"
    assert watcher.is_done("5_0", mode="cache") and not watcher.is_done("5_2", mode="cache")
    assert watcher.is_done("9", mode="cache")  # gone from the controller: ended (cancelled, or aged out)
    assert "Bypassing sacct error" not in caplog.text and watcher.accounting is False


def test_the_callback_installs_the_watcher_for_slurm_sweeps_only(monkeypatch):
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmJob

    monkeypatch.setattr(SlurmJob, "watcher", SlurmJob.watcher)
    before = SlurmJob.watcher
    SlurmStates().on_multirun_start(OmegaConf.create({"hydra": {"launcher": {"_target_": "x.JoblibLauncher"}}}))
    assert SlurmJob.watcher is before
    target = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    SlurmStates().on_multirun_start(OmegaConf.create({"hydra": {"launcher": {"_target_": target}}}))
    assert SlurmJob.watcher is not before and type(SlurmJob.watcher).__name__ == "SlurmWatcher"
