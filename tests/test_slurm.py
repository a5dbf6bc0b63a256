"""The SLURM tier: a real single-node cluster (munge, slurmctld, slurmd; tests/slurm_cluster.py)
runs a tiny Table 1 sweep through Hydra's submitit launcher, has one job cancelled mid-run, and
takes the same sweep again; plus the search shared out by srun. Needs root and the Debian packages
`slurm-wlm munge` (.ci/run installs them); skipped where the SLURM binaries are absent. By hand:

    apt-get install -y slurm-wlm munge
    .venv/bin/python -m pytest tests/test_slurm.py -m slurm -p no:xdist
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import slurm_cluster  # noqa: E402

pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(bool(slurm_cluster.missing()), reason="no SLURM here: apt-get install slurm-wlm munge")]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
METHODS = ("dense", "shortgpt", "skrr")
TARGETS = (0.24, 0.32, 0.40)  # tiny_table1_pixart's


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    try:
        env = slurm_cluster.start(folder)
    except Exception:
        slurm_cluster.stop(folder)
        raise
    yield {**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(["scancel", "--user", "root"], env=env)
    slurm_cluster.stop(folder)


def sweep(root: Path, sweep_dir: Path) -> list[str]:
    return [str(BIN / "skrr-run"), "-m", "experiment=tiny_table1_pixart", "hydra/launcher=slurm_cpu",
            "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=3",
            f"method={','.join(METHODS)}", f"paths.root={root}", f"hydra.sweep.dir={sweep_dir}", "progress=false"]


def squeue(env) -> list[tuple[str, str, str]]:
    """(job id, name, state) of every job the controller holds."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, env=env, check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def wait_for(ok, seconds, what):
    end = time.monotonic() + seconds
    while not ok():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def rows_of(root: Path) -> list[dict]:
    path = root / "results" / "tiny_table1_pixart.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def stage_log(root: Path) -> list[tuple[str, str]]:
    return [(e["stage"], e["key"]) for e in map(json.loads, (root / "stage_log.jsonl").read_text().splitlines())]


def test_table_sweep_on_slurm_survives_a_cancelled_job(cluster, tmp_path):
    root, sweep_dir = tmp_path / "root", tmp_path / "sweep"
    # 1. the sweep; the Skrr job (index 2) is cancelled while its search runs
    first = subprocess.Popen(sweep(root, sweep_dir), cwd=ROOT, env=cluster, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    skrr_job = []

    def skrr_searching():
        jobs = [j for j, _, state in squeue(cluster) if j.endswith("_2") and state == "RUNNING"]
        searching = [d for d in (root / "plans").glob("*") if not (d / "stage.json").is_file()] if (root / "plans").is_dir() else []
        skrr_job[:] = jobs
        return bool(jobs and searching)

    wait_for(skrr_searching, 400, "the Skrr job's search")
    subprocess.run(["scancel", skrr_job[0]], env=cluster, check=True)
    out, _ = first.communicate(timeout=400)  # the submitter sees the cancelled job end: no endless wait
    assert first.returncode != 0, out[-3000:]
    assert "Bypassing sacct error" not in out and "keeps no job accounting" in out
    wait_for(lambda: not squeue(cluster), 400, "the other jobs to finish")
    rows = rows_of(root)
    assert sorted({r["method"] for r in rows}) == ["dense", "shortgpt"]  # nothing from the cancelled job

    # 2. the same sweep again: only the missing work runs
    again = subprocess.run(sweep(root, tmp_path / "sweep2"), cwd=ROOT, env=cluster, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "Bypassing sacct error" not in again.stdout + again.stderr
    rows = rows_of(root)
    expected = [("dense", 0.0)] + [(m, t) for m in METHODS[1:] for t in TARGETS]
    assert sorted((r["method"], r["target"]) for r in rows) == sorted(expected)  # every row exactly once
    log = stage_log(root)
    assert len(log) == len(set(log)), "a stage ran twice"  # resume redid nothing finished
    dense = {d.parent.parent.name for d in root.glob("images/*/*/stage.json")
             if json.loads(d.read_text())["inputs"]["plan"] == {"skip": [], "reuse": {}, "weights": None}}
    assert len(dense) == 1  # the dense images, made once (by whichever job came first) ...
    readers = {json.loads(m.read_text())["inputs"].get("images") for m in root.glob("metrics/*/stage.json")
               if json.loads(m.read_text())["inputs"].get("dense") in dense}
    assert len(readers - dense) >= 3  # ... and read from the store by the pruned runs' FID and DreamSim


def test_srun_shares_the_search_across_tasks(cluster, tmp_path):
    args = ["-m", "skrr.experiments.cli.prune", "method=finercut", "method.batch_size=4", "calibration.size=12",
            "method.sparsity=0.1", "progress=false"]
    two = subprocess.run(["srun", "-n", "2", "-c", "1", "--mem=3G", sys.executable, *args,
                          f"hydra.run.dir={tmp_path / 'two'}"], cwd=ROOT, env=cluster, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, *args, f"hydra.run.dir={tmp_path / 'one'}"], cwd=ROOT, env=cluster,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    plans = [json.loads((tmp_path / d / "plan.json").read_text()) for d in ("one", "two")]
    assert [p["info"].pop("world_size") for p in plans] == [1, 2]
    assert plans[0] == plans[1]  # skip order, D per depth: every number the same
