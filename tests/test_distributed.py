"""The data-parallel search (skrr.search.distributed): two real gloo ranks under torchrun find the same
plans, D per depth, re-use traces, block influences and LaCo similarities as one process, for
Skrr and every baseline on tiny_pixart and toyworld_v2; each rank holds only its own batches'
targets; `skrr-prune` under torchrun writes one plan from rank 0; a rank that dies or hangs
fails the others with one `error:` line within the timeout."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skrr.search import distributed

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def without_world_size(results: dict) -> dict:
    return {k: [{**p, "info": {i: v for i, v in p["info"].items() if i != "world_size"}} for p in plans]
            for k, plans in results.items()}


def test_one_process_is_rank_zero_of_one():
    assert distributed.env_world() == (0, 1, 0) or "WORLD_SIZE" in os.environ
    assert distributed.mine(5) == [0, 1, 2, 3, 4]
    x = torch.arange(6, dtype=torch.float64).reshape(3, 2)
    assert distributed.gather_batches(x) is x


def test_two_ranks_find_what_one_process_finds(tmp_path):
    from skrr.models.tiny import tiny_pipeline_dir

    tiny_pipeline_dir("tiny_pixart")  # built once, before two processes load it
    models = ["tiny_pixart", "toyworld_v2"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "dp_search.py"), str(one), *models],
                       capture_output=True, text=True, env=ENV, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run([*TORCHRUN, str(ROOT / "tests" / "dp_search.py"), str(two), *models],
                       capture_output=True, text=True, env=ENV, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    single, shared = json.loads(one.read_text()), json.loads(two.read_text())
    assert sorted(single) == sorted(f"{m}/{k}" for m in models for k in ("skrr", "shortgpt", "laco", "finercut"))
    assert without_world_size(single) == without_world_size(shared)  # every field, floats compared exactly
    assert {p["info"]["world_size"] for plans in shared.values() for p in plans} == {2}
    assert all(p["skip"] for plans in single.values() for p in plans)  # each method removed something
    ranks = [json.loads(Path(f"{two}.rank{r}").read_text()) for r in (0, 1)]
    assert ranks[0]["batches"] == 6  # 20 prompts in batches of 4, then the null prompt
    assert ranks[0]["mine"] == ranks[0]["held"] == [0, 2, 4] and ranks[1]["mine"] == ranks[1]["held"] == [1, 3, 5]


def test_skrr_prune_under_torchrun_writes_one_plan_from_rank_zero(tmp_path):
    from omegaconf import OmegaConf

    from skrr.prune import prune

    args = ["model=tiny_pixart", "method=shortgpt", "method.batch_size=4", "calibration.size=12", "progress=false",
            f"hydra.run.dir={tmp_path / 'run'}"]
    p = subprocess.run([*TORCHRUN, "-m", "skrr.experiments.cli.prune", *args], capture_output=True, text=True, env=ENV,
                       timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["info"]["world_size"] == 2
    assert p.stdout.count("plan.json") == 2  # rank 0 alone reports and writes: the plan, then its `latest` path
    assert (tmp_path / "latest" / "plan.json").is_file()
    method = OmegaConf.merge(OmegaConf.load(ROOT / "conf/method/shortgpt.yaml"), {"batch_size": 4})
    calibration = OmegaConf.merge(OmegaConf.load(ROOT / "conf/calibration/builtin.yaml"), {"size": 12})
    [single] = prune("tiny_pixart", method, calibration, progress=False)
    assert plan["skip"] == single.skip and plan["info"]["bi"] == single.info["bi"]


RANK_SCRIPT = """
import os, sys, time, torch
from skrr.search import distributed
distributed.init_from_env("cpu", timeout_s=float(sys.argv[1]))
if distributed.rank() == 1:
    os._exit(3) if sys.argv[2] == "die" else time.sleep(120)
t0 = time.monotonic()
try:
    distributed.gather_batches(torch.zeros(4, 2, dtype=torch.float64))
except distributed.RankLost as e:
    print(time.monotonic() - t0)  # how long the survivor waited
    print(f"error: {e}", file=sys.stderr)
    distributed.close()  # as skrr-prune does: a gloo group left to the interpreter's exit may abort it
    sys.exit(1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["die", "hang"])
def test_a_lost_rank_fails_the_others_with_one_line(how):
    port, timeout = free_port(), 10
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(timeout), how], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**ENV, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in (0, 1)]
    try:
        out, err = procs[0].communicate(timeout=300)
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert procs[0].returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: rank 0 of 2 lost the other ranks during the per-batch all-gather"), err
    assert float(out) < timeout + 20  # never waits (much) past the timeout
