"""The store heals: a stage whose artifacts are missing or damaged runs again (and says so) instead
of being reused, crashing later, or scoring bad data. Each scenario is built in-process, damaged,
then re-run through the skrr-run CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image
from test_run import compose_run, stage_log

from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.cli.run import run_job
from skrr.experiments.runner.results import load_results

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
TOY = ["model=toyworld", "eval=toyworld", "method=dense", "eval.metrics=[dreamsim,geneval]",
       "eval.prompts.text.n=6", "eval.sampler.num_inference_steps=2", "progress=false", "threads=1"]
TINY = ["method=skrr", "method.beam_width=1", "sparsity=[0.2,0.4]", "calibration.size=8", "eval.metrics=[clip,efficiency]",
        "eval.prompts.text=[a red cube,two blue balls,a cat]", "progress=false"]


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "skrr.experiments.cli.run", *args], capture_output=True, text=True, env=ENV,
                       cwd=Path(CONF_DIR).parent, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout + p.stderr


def test_a_truncated_image_is_made_again_in_both_sets_that_share_it(tmp_path):
    (row,) = run_job(compose_run(tmp_path, *TOY, fast=False), "t")
    images = Path(row["artifacts"]["images"])
    text, geneval = images / "text" / "00001.png", images / "geneval" / "00001.png"
    assert os.path.samefile(text, geneval)  # the GenEval set links the text set's images
    original = text.read_bytes()
    with open(text, "r+b") as f:
        f.truncate(10)  # damage both sets at once, as a full disk or a bad copy would
    before = stage_log(tmp_path)

    out = cli(f"paths.root={tmp_path}", *TOY)
    for name in ("text", "geneval"):
        assert f"images/{images.name}/{name}: 00001.png has 10 bytes, {len(original)} written; making it again" in out
    assert text.read_bytes() == original and geneval.read_bytes() == original  # the same image, healed in both
    with Image.open(geneval) as im:
        im.load()
    new = stage_log(tmp_path)[len(before):]
    assert [(e["stage"], e["key"], list(e["remade"])) for e in new] == [
        ("images", f"{images.name}/text", ["00001.png"]), ("images", f"{images.name}/geneval", ["00001.png"])]
    rows = load_results(tmp_path / "results" / "adhoc.jsonl")
    assert len(rows) == 1 and rows[0]["metrics"] == row["metrics"]


def test_same_size_damage_is_found_with_verify(tmp_path):
    (row,) = run_job(compose_run(tmp_path, *TOY, fast=False), "t")
    image = Path(row["artifacts"]["images"]) / "text" / "00002.png"
    original = bytearray(image.read_bytes())
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    image.unlink()  # a new file, not the shared inode: only the text set is damaged
    image.write_bytes(bytes(damaged))
    assert run_job(compose_run(tmp_path, *TOY, fast=False), "t")[0]["ran"] == []  # names and sizes look right
    again = run_job(compose_run(tmp_path, *TOY, "verify=true", fast=False), "t")[0]
    assert again["ran"] == ["dense_images"] and image.read_bytes() == bytes(original)
    assert stage_log(tmp_path)[-1]["remade"] == {"00002.png": "content changed (hash differs)"}


def test_a_deleted_plan_and_a_deleted_metric_record_are_made_again(tmp_path):
    low, high = run_job(compose_run(tmp_path, *TINY, fast=False), "t")
    plan = Path(high["artifacts"]["plan"])
    metric = next(e["key"] for e in stage_log(tmp_path) if e["stage"] == "metrics")  # its record is its only file
    plan.unlink()
    (tmp_path / "metrics" / metric / "stage.json").unlink()
    before = stage_log(tmp_path)

    out = cli(f"paths.root={tmp_path}", *TINY)
    assert f"plans/{plan.parent.name}: {plan.name} missing; making it again" in out
    assert plan.is_file()
    assert [(e["stage"], e["key"]) for e in stage_log(tmp_path)[len(before):]] == [
        ("plans", plan.parent.name), ("metrics", metric)]  # the same plans, so the images are reused
    rows = load_results(tmp_path / "results" / "adhoc.jsonl")
    assert [r["metrics"] for r in rows] == [low["metrics"], high["metrics"]]


def test_a_damaged_stage_record_reruns_the_stage(tmp_path):
    (row,) = run_job(compose_run(tmp_path, "method=dense", "eval.metrics=[efficiency]", "progress=false", fast=False), "t")
    record = Path(row["artifacts"]["plan"]).parent / "stage.json"
    record.write_text(record.read_text()[:20])  # torn JSON
    again = run_job(compose_run(tmp_path, "method=dense", "eval.metrics=[efficiency]", "progress=false", fast=False), "t")
    assert again[0]["ran"] == ["plan"] and json.loads(record.read_text())["files"]


def test_a_failed_or_interrupted_first_attempt_leaves_no_empty_stage_folder(tmp_path):
    import pytest

    from skrr.experiments.runner.stages import Store

    store = Store(tmp_path)

    def fails(out):
        raise ValueError("bad input found late")

    def interrupted(out):
        raise KeyboardInterrupt

    with pytest.raises(ValueError):
        store.run("plans", "k1", fails)
    with pytest.raises(KeyboardInterrupt) as e:
        store.run("plans", "k2", interrupted)
    assert e.value.stage == "plans/k2"
    assert not (tmp_path / "plans" / "k1").exists() and not (tmp_path / "plans" / "k2").exists()
