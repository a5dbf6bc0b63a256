"""The toy world behind eval's metric interface (`eval=toyworld`): the plumbing `make demo` uses."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from eval.metrics import build_metric, fid_needs_reference_stats, metric_config
from eval.run import prompt_sets
from experiments.stages import only_set
from experiments import toyworld
from experiments.toyworld.evaluate import prompt_reference_images

EVAL = OmegaConf.load("conf/eval/toyworld.yaml")
N = 12


def small_eval():
    return OmegaConf.merge(EVAL, {"prompts": {"toyworld": {"n": N}},
                                  "overrides": {"fid": {"reference": {"n": N, "seed": 0, "dims": 8}}}})


def test_prompt_sets_and_switching_one_off():
    sets = prompt_sets(small_eval())
    assert [m["prompt"] for m in sets["geneval"]] == sets["text"] == [m["prompt"] for m in toyworld.prompts("geneval", N, 0)]
    assert set(prompt_sets(only_set(small_eval(), "text"))) == {"text"}
    assert set(prompt_sets(only_set(small_eval(), "geneval"))) == {"geneval"}


def test_metrics_on_true_renders_and_on_blank_images():
    ev = small_eval()
    truth = [Image.fromarray(a) for a in prompt_reference_images("geneval", N, 0)]  # as the runner loads them
    blank = [Image.new("RGB", truth[0].size) for _ in truth]
    meta = toyworld.prompts("geneval", N, 0)
    assert not fid_needs_reference_stats(metric_config("fid", ev))  # the toy world brings its own reference

    geneval = build_metric("geneval", metric_config("geneval", ev))
    geneval.update(truth, meta)
    assert geneval.compute()["overall"] == 1.0
    geneval.reset()
    geneval.update(blank, meta)
    assert geneval.compute()["overall"] == 0.0

    fid = build_metric("fid", metric_config("fid", ev))
    fid.update(truth)
    assert fid.compute() == pytest.approx(0.0, abs=1e-3)  # the very images of the reference
    fid.reset()
    fid.update(blank)
    assert fid.compute() > 10.0

    sim = build_metric("dreamsim", metric_config("dreamsim", ev))
    sim.update(truth, truth)
    assert sim.compute() == pytest.approx(1.0)
    sim.reset()
    sim.update(truth, truth[1:] + truth[:1])  # every pair a different scene
    assert sim.compute() < 0.9


def test_unknown_toy_metric_is_refused():
    with pytest.raises(ValueError, match="toy world has no 'clip'"):
        build_metric("clip", OmegaConf.create({"backend": "toyworld"}))


def test_skrr_run_on_the_toy_world_generates_each_image_once(tmp_path):
    """With eval=toyworld the GenEval prompts are the text prompts: their images are linked, not
    generated twice, and every toy metric lands in the result row."""
    from hydra import compose, initialize_config_dir

    from experiments.cli import CONF_DIR
    from experiments.run import run_job

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[
            f"paths.root={tmp_path}", "model=toyworld", "eval=toyworld", "method=dense", "progress=false",
            "threads=1", "eval.prompts.toyworld.n=6", "eval.overrides.fid.reference.n=50",
            "eval.sampler.num_inference_steps=2", "eval.metrics=[fid,dreamsim,geneval,efficiency]"])
    (row,) = run_job(cfg, "toy")
    images = Path(row["artifacts"]["images"])
    for i in range(6):
        text, geneval = images / "text" / f"{i:05d}.png", images / "geneval" / f"{i:05d}.png"
        assert text.stat().st_ino == geneval.stat().st_ino
    assert row["metrics"]["dreamsim"] == pytest.approx(1.0)  # dense vs itself
    assert set(row["metrics"]["geneval"]) >= {"overall", "counting", "position"}
    assert row["metrics"]["fid"] > 0
    eff = row["metrics"]["efficiency"]  # a pixel-space pipeline: no VAE FLOPs, the rest counted
    assert eff["vae_flops"] == 0 < eff["encoder_flops"] < eff["denoiser_flops"]
