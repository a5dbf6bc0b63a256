"""skrr-run: one job prunes once for all targets, shares the dense images, stores one row per
target, and a re-run recomputes nothing (checked through the stage log and a pipeline loader
that fails if called)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from skrr.eval.per_item import Items
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.cli.run import run_job
from skrr.experiments.runner import stages
from skrr.experiments.runner.results import load_results

FAST = ["calibration.size=8", "eval.metrics=[clip,dreamsim,efficiency]",
        "eval.prompts.text=[a red cube,two blue balls,a cat]", "progress=false"]


SKRR = ["method=skrr", "method.beam_width=1", "sparsity=[0.2,0.4]"]


def compose_run(root, *overrides, fast=True):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="run", overrides=[f"paths.root={root}", *(FAST if fast else []), *overrides])


def stage_log(root) -> list[dict]:
    path = Path(root) / "stage_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run_sweep(root):
    rows = run_job(compose_run(root, "method=dense"), "t")
    return rows + run_job(compose_run(root, *SKRR), "t")


def test_sweep_shares_dense_stores_rows_and_resumes_without_recomputing(tmp_path, monkeypatch):
    rows = run_sweep(tmp_path)
    stored = load_results(tmp_path / "results" / "t.jsonl")
    assert [r["run_key"] for r in stored] == [r["run_key"] for r in rows] and len(stored) == 3
    dense, low, high = stored
    assert dense["sparsity"] == 0.0 and dense["metrics"]["dreamsim"]["value"] == pytest.approx(1.0, abs=1e-5)
    for r in stored:  # every quality metric: its value, a 95% interval around it, per-image scores to pair
        for m in ("clip", "dreamsim"):
            lo, hi = r["metrics"][m]["ci"]
            assert lo - 1e-9 <= r["metrics"][m]["value"] <= hi + 1e-9
            assert Items.load(r["artifacts"]["items"][m]).keys.tolist() == \
                Items.load(dense["artifacts"]["items"][m]).keys.tolist()
    assert 0.2 <= low["sparsity"] < high["sparsity"] and high["sparsity"] >= 0.4
    assert high["metrics"]["efficiency"]["pipeline_params"] < dense["metrics"]["efficiency"]["pipeline_params"]
    for r in stored:
        assert set(r["metrics"]) == {"clip", "dreamsim", "efficiency"}
        assert r["versions"]["torch"] and r["config"]["model"]["name"] == "tiny_pixart"
        assert {"plan", "images/text", "metrics/clip"} <= set(r["timings"])
    assert low["plan"]["depth_d"] and low["plan"]["path"] == high["plan"]["path"]  # one search, two targets
    # every plan's D on Skrr's default yardstick: a default Skrr plan's is its own final D; dense's is 0
    assert dense["discrepancy"]["value"] == 0.0 and low["discrepancy"]["calibration"]["size"] == 8
    assert [r["discrepancy"]["value"] for r in (low, high)] == [r["plan"]["d_final"] for r in (low, high)]

    log = stage_log(tmp_path)
    keys = [(e["stage"], e["key"]) for e in log]
    assert len(keys) == len(set(keys))  # no stage ran twice
    assert sum(e["stage"] == "plans" for e in log) == 2  # dense + one Skrr search for both targets
    dense_images = Path(dense["artifacts"]["images"]).name
    assert keys.count(("images", f"{dense_images}/text")) == 1  # dense images made once, DreamSim reused them
    assert Path(low["artifacts"]["dense_images"]).name == dense_images

    # re-run: nothing runs, nothing loads, no duplicate rows
    monkeypatch.setattr(stages, "load_run_pipeline", lambda *a, **k: pytest.fail("a cached run loaded a pipeline"))
    again = run_sweep(tmp_path)
    assert stage_log(tmp_path) == log
    assert all(r["ran"] == [] for r in again)
    assert len(load_results(tmp_path / "results" / "t.jsonl")) == 3
    assert [r["metrics"] for r in again] == [r["metrics"] for r in stored]

    # a killed generation (stage marker and one image missing) redoes exactly that stage
    images = Path(high["artifacts"]["images"]) / "text"
    (images / stages.DONE).unlink()
    (images / "00001.png").unlink()
    monkeypatch.undo()
    run_job(compose_run(tmp_path, *SKRR), "t")
    new = stage_log(tmp_path)[len(log):]
    assert [(e["stage"], e["key"]) for e in new] == [("images", f"{images.parent.name}/text")]
    assert (images / "00001.png").is_file()


def test_smoke_eval_scores_every_metric_from_folders(tmp_path):
    """eval=smoke, all five metrics on the dense model: the dense images are the tiny FID's reference
    (FID 0) and DreamSim's twin (1.0)."""
    (row,) = run_job(compose_run(tmp_path, "method=dense", "eval.prompts.geneval_generated=1", "progress=false",
                                 "calibration.size=8", fast=False), "t")
    values = row["metrics"]
    assert set(values) == {"fid", "clip", "dreamsim", "geneval", "efficiency"}
    assert abs(values["fid"]) < 1e-3 and values["dreamsim"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert -1 <= values["clip"]["value"] <= 1 and 0 <= values["geneval"]["overall"]["value"] <= 1 and values["efficiency"]["tflops"] > 0


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "skrr.experiments.cli.run", *args], capture_output=True, text=True, env=ENV,
                          cwd=Path(CONF_DIR).parent, timeout=600)


def test_bad_input_fails_fast_with_one_line_and_no_artifacts(tmp_path, capsys):
    from skrr.experiments.cli.app import fail_fast

    for bad, words in ((["eval.metrics=[bogus]"], "unknown metrics"),
                       (["eval=paper", "eval.device=cpu"], "metrics.fid.reference_stats"),
                       (["eval.metrics=[geneval]", "eval.prompts.geneval_generated=null"], "geneval_metadata")):
        with pytest.raises(SystemExit) as e, fail_fast():
            run_job(compose_run(tmp_path, *bad, fast="eval=paper" not in bad), "t")
        err = capsys.readouterr().err
        assert e.value.code == 2 and words in err and err.count("\n") == 1
    p = cli(f"paths.root={tmp_path}", "method.beam_width=0")  # the console entry point itself
    assert p.returncode == 2 and "method.beam_width must be" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "plans").exists() and not (tmp_path / "results").exists()


def test_cli_multirun_experiment_with_command_line_overrides(tmp_path):
    p = cli("-m", "experiment=tiny_table1_pixart", "method=dense,finercut", "sparsity=[0.3]", f"paths.root={tmp_path}",
            "eval.metrics=[clip]", "eval.prompts.text=[a red cube,a cat]", "calibration.size=8", "progress=false")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = load_results(tmp_path / "results" / "tiny_table1_pixart.jsonl")
    assert sorted(r["method"] for r in rows) == ["dense", "finercut"]
    assert all(r["experiment"] == "tiny_table1_pixart" and r["model"] == "tiny_pixart" for r in rows)
    assert next(r for r in rows if r["method"] == "finercut")["sparsity"] >= 0.3


def test_dense_noise_floor_scores_the_dense_model_again_on_disjoint_seeds(tmp_path):
    rows = run_job(compose_run(tmp_path, "method=dense", "eval.noise_floor=true"), "t")
    stored = load_results(tmp_path / "results" / "t.jsonl")
    assert [r["run_key"] for r in stored] == [r["run_key"] for r in rows] and len(rows) == 2
    base, floor = rows
    shift = floor["seed_offset"]  # past every prompt set's seeds (smoke's GenEval set is the largest)
    assert "seed_offset" not in base and shift >= 3
    assert floor["config"]["eval"]["sampler"]["base_seed"] == base["config"]["eval"]["sampler"]["base_seed"] + shift
    a, b = (Path(r["artifacts"]["images"]) / "text" for r in rows)
    assert a != b and (a / "00000.png").read_bytes() != (b / "00000.png").read_bytes()
    assert base["metrics"]["clip"]["value"] != floor["metrics"]["clip"]["value"]
    assert all(r["metrics"]["dreamsim"]["value"] == pytest.approx(1.0, abs=1e-5) for r in rows)  # each its own dense
