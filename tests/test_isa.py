"""The same answer under two instruction sets on one machine: the default kernels and the AVX2 limits
(`ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2`, which imitate an
older CPU on an AVX-512/AMX one). Kernels round differently under each, so the contract is not bit
equality: identical plans, D within the compute dtype's tolerance, and every metric within the
other run's 95% interval (docs/exactness.md). On an AVX2-only machine both runs use the same
kernels and the test checks plain run-to-run determinism."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skrr.experiments.runner.results import load_results
from skrr.search.compute import TOLERANCE

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS = {"default": {}, "avx2": AVX2}
TOY = ["model=toyworld_v2", "calibration=toyworld", "eval=toyworld", "method=skrr", "method.beam_width=1",
       "sparsity=[0.24]", "calibration.size=8", "eval.metrics=[dreamsim,geneval]", "eval.prompts.text.n=24",
       "eval.sampler.num_inference_steps=6", "eval.sampler.batch_size=8", "progress=false", "threads=1"]


def run(module, settings, *args):
    env = {k: v for k, v in os.environ.items() if k not in AVX2}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1", **SETTINGS[settings])
    p = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def toy_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("isa")
    rows = {}
    for name in SETTINGS:
        run("skrr.experiments.cli.run", name, f"paths.root={root / name}", *TOY)
        (rows[name],) = load_results(root / name / "results" / "adhoc.jsonl")
    return rows


def capability(settings: str) -> str:
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    env = {k: v for k, v in os.environ.items() if k not in AVX2}
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={**env, **SETTINGS[settings]}).stdout.strip()


def test_the_avx2_limits_take_effect():
    assert capability("avx2") in ("AVX2", "DEFAULT")  # never the AVX-512 kernels under the limits
    if "avx512f" in Path("/proc/cpuinfo").read_text():  # here the two runs really use different kernels
        assert capability("default") == "AVX512"


def test_a_tiny_search_makes_the_same_plan_under_both_instruction_sets(tmp_path):
    plans = {}
    for name in SETTINGS:
        run("skrr.experiments.cli.prune", name, "model=tiny_pixart", "method=skrr", "method.beam_width=2",
            "method.sparsity=0.4", "calibration.size=16", "progress=false", f"hydra.run.dir={tmp_path / name}")
        plans[name] = json.loads((tmp_path / name / "plan.json").read_text())
    a, b = plans["default"], plans["avx2"]
    assert b["info"]["machine"]["cpu_capability"] in ("AVX2", "DEFAULT")
    assert (a["skip"], a["reuse"], a["info"]["order"]) == (b["skip"], b["reuse"], b["info"]["order"])
    for x, y in zip(a["info"]["depth_d"], b["info"]["depth_d"], strict=True):
        assert x == pytest.approx(y, rel=TOLERANCE[__import__("torch").float32], abs=0)


def test_toy_world_plans_and_metrics_agree_within_their_intervals(toy_rows):
    a, b = toy_rows["default"], toy_rows["avx2"]
    assert (a["plan"]["skip"], a["plan"]["reuse"]) == (b["plan"]["skip"], b["plan"]["reuse"])
    assert b["plan"]["machine"]["cpu_capability"] in ("AVX2", "DEFAULT")
    assert set(a["metrics"]) == set(b["metrics"]) == {"dreamsim", "geneval"}
    values = {key: value for key, value in estimates(a["metrics"])}
    others = dict(estimates(b["metrics"]))
    assert set(values) == set(others) and "geneval.overall" in values and "dreamsim" in values
    for key, (va, (lo_a, hi_a)) in values.items():
        vb, (lo_b, hi_b) = others[key]
        assert lo_b - 1e-9 <= va <= hi_b + 1e-9 and lo_a - 1e-9 <= vb <= hi_a + 1e-9, (key, va, vb)


def estimates(metrics: dict, prefix: str = ""):
    """(name, (value, [lo, hi])) for every estimate in a row's metrics (GenEval nests one per task)."""
    for name, m in metrics.items():
        if isinstance(m, dict) and "value" in m and "ci" in m:
            yield prefix + name, (m["value"], m["ci"])
        elif isinstance(m, dict):
            yield from estimates(m, f"{prefix}{name}.")
