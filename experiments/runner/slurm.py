"""Job states for Hydra's submitit SLURM launcher on clusters without accounting.

submitit asks `sacct` for the state of every job it waits on. Many small clusters run no
accounting database, so each poll fails ("Bypassing sacct error ..., status may be inaccurate",
several times per job) and a job that ends without a result (cancelled, killed) is never seen to
end: the sweep would wait forever. Where `sacct` does not answer, `SlurmWatcher` asks the
controller itself (`scontrol show job`) and counts a job it no longer lists as ended; submitit
then reports it done, or failed when it left no result. With accounting nothing changes.

Installed for every sweep by the Hydra callback `SlurmStates` (conf/run.yaml, conf/prune.yaml).
"""
from __future__ import annotations

import logging
import re
import subprocess
import time

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)
FIELD = re.compile(r"(\w+)=(\S*)")


def sacct_works() -> bool:
    """Whether `sacct` answers (it fails where accounting storage is disabled, or is not installed)."""
    try:
        return subprocess.run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def scontrol_states(text: str) -> dict[str, dict[str, str]]:
    """{job id as submitit names it (`<id>` or `<array id>_<index>`): {State, NodeList}} from
    `scontrol -o show job`; a pending array's range (`ArrayTaskId=0-3` or `0,2`) is expanded."""
    out = {}
    for line in text.splitlines():
        f = dict(FIELD.findall(line))
        if "JobId" not in f:
            continue
        info = {"JobID": f["JobId"], "State": f.get("JobState", "UNKNOWN"), "NodeList": f.get("NodeList", "")}
        task = f.get("ArrayTaskId")
        if not task or "ArrayJobId" not in f:
            out[f["JobId"]] = info
            continue
        for part in task.split("%")[0].split(","):
            lo, _, hi = part.partition("-")
            if lo.isdigit() and (not hi or hi.isdigit()):
                for i in range(int(lo), int(hi or lo) + 1):
                    out[f"{f['ArrayJobId']}_{i}"] = info
    return out


def make_watcher(delay_s: int = 600):
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SlurmWatcher(SlurmInfoWatcher):
        """sacct where the cluster keeps accounting, else the controller's own job list."""
        accounting: bool | None = None

        def update(self) -> None:
            if self.accounting is None:
                self.accounting = sacct_works()
                if not self.accounting:
                    log.info("this cluster keeps no job accounting (sacct fails): job states come from scontrol")
            if self.accounting:
                return super().update()
            waiting = self._registered - self._finished
            if not waiting:
                return
            self._num_calls += 1
            try:
                text = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True,
                                      check=True, timeout=60).stdout
            except (OSError, subprocess.SubprocessError) as e:  # the controller is busy: ask again next poll
                log.debug("scontrol show job failed (%s); asking again later", e)
            else:
                states = scontrol_states(text)
                for job in waiting:  # gone from the controller: ended (a result file says how)
                    self._info_dict[job] = states.get(job, {"JobID": job, "State": "ENDED", "NodeList": ""})
            self._last_status_check = time.time()

    return SlurmWatcher(delay_s=delay_s)


class SlurmStates(Callback):
    """Puts `SlurmWatcher` in submitit's place before a SLURM sweep is submitted."""

    def on_multirun_start(self, config, **kwargs) -> None:
        if "SlurmLauncher" in str(config.hydra.launcher.get("_target_", "")):
            from submitit.slurm.slurm import SlurmJob

            SlurmJob.watcher = make_watcher()
