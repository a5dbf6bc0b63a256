"""`make bench-gpu` cannot rot: its script runs every step on the tiny twin on the CPU, and says in
one line that it measured nothing where there is no CUDA device."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_every_step_runs_at_tiny_size_on_the_cpu(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--workdir", str(tmp_path),
                        "--size", "32", "--steps", "2", "--images", "1"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    for key in ("peak_gib_dense", "peak_gib_pruned", "images_per_s_dense", "images_per_s_pruned",
                "search_s_float32", "search_s_bfloat16"):
        assert math.isfinite(r[key]) and r[key] >= 0, (key, r[key])
    assert r["images_per_s_dense"] > 0 and r["images_per_s_pruned"] > 0
    assert 0.2 < r["sparsity"] < 0.6  # the paper order's prefix that fits the twin
    assert (tmp_path / "pruned" / "plan.json").is_file()  # shipped and loaded back, not pruned in place
    assert isinstance(r["search_same_decisions"], bool) and r["search_skip_order_float32"]
    assert "peak memory (GiB)" in p.stdout and "search decisions agree" in p.stdout


def test_without_cuda_it_says_so_and_measures_nothing(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(tmp_path)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 1
    assert p.stderr.strip().startswith("no CUDA device here") and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gpu_check.json").exists()


def test_the_workdir_may_not_be_inside_the_repository():
    p = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--workdir", str(ROOT / "runs_x")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "inside the repository" in p.stderr
    assert not (ROOT / "runs_x").exists()
