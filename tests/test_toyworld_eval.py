"""The toy world plugged into the metric and prompt configs (`eval=toyworld`): the plumbing `make demo` uses."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from skrr.eval.metrics import build_metric, metric_class
from skrr.eval.per_item import Items
from skrr.eval.prompts import prompt_sets
from skrr.experiments import toyworld
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.toyworld.metrics import prompt_reference_images

N = 12


def toy_config(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="run", overrides=["eval=toyworld", f"eval.prompts.text.n={N}", *overrides])


def test_prompt_sets_are_the_toy_prompts_for_both_sets():
    sets = prompt_sets(toy_config().eval.prompts)
    assert [m["prompt"] for m in sets["geneval"]] == sets["text"] == [m["prompt"] for m in toyworld.prompts("geneval", N, 0)]


def test_metrics_on_true_renders_and_on_blank_images():
    cfg = toy_config("metrics.fid.n=12", "metrics.fid.seed=0", "metrics.fid.dims=8")
    truth = [Image.fromarray(a) for a in prompt_reference_images("geneval", N, 0)]  # as the runner loads them
    blank = [Image.new("RGB", truth[0].size) for _ in truth]
    meta = toyworld.prompts("geneval", N, 0)
    assert not metric_class(cfg.metrics.fid).needs_dense(cfg.metrics.fid)  # the toy world brings its own reference

    geneval = build_metric(cfg.metrics.geneval)
    geneval.update(truth, meta)
    assert geneval.compute()["overall"] == 1.0
    geneval.reset()
    geneval.update(blank, meta)
    assert geneval.compute()["overall"] == 0.0

    fid = build_metric(cfg.metrics.fid)
    fid.update(truth, meta)
    assert fid.compute() == pytest.approx(0.0, abs=1e-3)  # the very images of the reference
    fid.reset()
    fid.update(blank, meta)
    assert fid.compute() > 10.0

    sim = build_metric(cfg.metrics.dreamsim)
    sim.update(truth, meta, dense=truth)
    assert sim.compute() == pytest.approx(1.0)
    sim.reset()
    sim.update(truth, meta, dense=truth[1:] + truth[:1])  # every pair a different scene
    assert sim.compute() < 0.9


def test_toy_geneval2_judge_reads_the_true_scene():
    """On renders of the true scenes every answer is right (GM = AM = 1); on blank images none of
    the objects is there (0); one object recoloured loses that prompt's GM and one colour answer."""
    from skrr.experiments.toyworld.geneval2 import prompt_scenes
    from skrr.experiments.toyworld.scenes import COLORS, Obj, Scene, render

    cfg = toy_config()
    pairs = prompt_scenes(16, 0)
    scenes, rows = [s for s, _ in pairs], [r for _, r in pairs]
    assert prompt_sets(cfg.eval.prompts)["geneval2"][:16] == rows  # the demo's set (64) starts with these
    assert sorted({r["atom_count"] for r in rows}) == [3, 4, 6, 8]
    metric = build_metric(cfg.metrics.geneval2)
    metric.update([Image.fromarray(render(s)) for s in scenes], rows)
    assert all(v == 1.0 for v in metric.compute().values())
    metric.reset()
    metric.update([Image.new("RGB", (32, 32)) for _ in scenes], rows)
    values = metric.compute()
    assert values["overall"] == values["object"] == values["attribute"] == values["position"] == 0.0
    metric.reset()
    i = next(i for i, r in enumerate(rows) if r["atom_count"] == 6)  # three objects, each with its colour
    first, *rest = scenes[i].objects
    color = next(c for c in COLORS if all((o.shape, o.color) != (first.shape, c) for o in scenes[i].objects))
    metric.update([Image.fromarray(render(Scene((Obj(first.shape, color, first.row, first.col), *rest))))], [rows[i]])
    values = metric.compute()
    assert values["overall"] == 0.0 and values["am"] == pytest.approx(6 / 7) and values["attribute"] == pytest.approx(2 / 3)


def test_skrr_run_on_the_toy_world_generates_each_image_once(tmp_path):
    """With eval=toyworld the GenEval prompts are the text prompts: their images are linked, not
    generated twice, and every toy metric lands in the result row."""
    from skrr.experiments.cli.run import run_job

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[
            f"paths.root={tmp_path}", "model=toyworld", "eval=toyworld", "method=dense", "progress=false",
            "threads=1", "eval.prompts.text.n=6", "metrics.fid.n=50",
            "eval.sampler.num_inference_steps=2", "eval.prompts.geneval2.n=4",
            "eval.metrics=[fid,dreamsim,geneval,geneval2,efficiency]"])
    (row,) = run_job(cfg, "toy")
    images = Path(row["artifacts"]["images"])
    for i in range(6):
        text, geneval = images / "text" / f"{i:05d}.png", images / "geneval" / f"{i:05d}.png"
        assert text.stat().st_ino == geneval.stat().st_ino
    assert row["metrics"]["dreamsim"]["value"] == pytest.approx(1.0)  # dense vs itself
    assert set(row["metrics"]["geneval"]) >= {"overall", "counting", "position"}
    gm = row["metrics"]["geneval2"]["overall"]  # toy GenEval 2: its own 4 prompts, one image each
    assert gm["ci"][0] <= gm["value"] <= gm["ci"][1] and len(list((images / "geneval2").glob("*.png"))) == 4
    fid = row["metrics"]["fid"]
    assert fid["value"] > 0 and fid["ci"][0] < fid["value"] < fid["ci"][1]
    keys = Items.load(row["artifacts"]["items"]["geneval"]).keys.tolist()
    assert keys[0].startswith("0|") and len(keys) == 6  # prompt and generator seed of each image
    eff = row["metrics"]["efficiency"]  # a pixel-space pipeline: no VAE FLOPs, the rest counted
    assert eff["vae_flops"] == 0 < eff["encoder_flops"] < eff["denoiser_flops"]
