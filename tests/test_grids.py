"""Qualitative grids: prompts chosen by a seeded rule that spans GenEval's tasks, every image captioned
with its own stored verdict and similarity, the toy world's true scene first, and the same grids
logged to W&B (offline) as images and tables. Rows and image folders are written here, shaped like
skrr-run's."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from skrr.eval.per_item import Items, item_keys
from skrr.experiments.report.grids import TASK_ORDER, choose_prompts, grids
from skrr.experiments.report.tables import latest, report
from skrr.experiments.runner.results import append_result
from skrr.experiments.toyworld.captions import prompt_scenes
from skrr.experiments.toyworld.scenes import render

N = 24  # four prompts per task
SOURCE = {"_target_": "skrr.experiments.toyworld.captions.prompts", "task_mix": "geneval", "n": N, "seed": 0}


def write_run(tmp_path, name, method, target, sparsity, correct, sim, toy=True):
    """A row whose image folder holds the renders of the prompts' scenes, shifted by `name`'s length
    (so columns differ), with per-image GenEval verdicts `correct` and similarities `sim`."""
    scenes = prompt_scenes("geneval", N, 0)
    prompts, tags = [m["prompt"] for _, m in scenes], [m["tag"] for _, m in scenes]
    folder = tmp_path / name / "images" / "geneval"
    folder.mkdir(parents=True)
    with open(folder / "metadata.jsonl", "w") as f:
        for i, (scene, meta) in enumerate(scenes):
            Image.fromarray(np.roll(render(scene), len(name), axis=1)).save(folder / f"{i:05d}.png")
            f.write(json.dumps({"index": i, "prompt": meta["prompt"], "seed": i}) + "\n")
    keys = item_keys(prompts, range(N))
    Items.mean(correct, keys, prompts, tags).save(tmp_path / name / "geneval.npz")
    Items.mean(sim, keys, prompts).save(tmp_path / name / "dreamsim.npz")
    text = SOURCE if toy else [p for p in prompts]
    return {"run_key": name, "experiment": "t", "finished_at": "2026-01-01T00:00:00", "method": method,
            "model": "toyworld_v2", "target": target, "sparsity": sparsity,
            "metrics": {"geneval": {"overall": {"value": float(np.mean(correct)), "ci": [0.0, 1.0]}},
                        "dreamsim": {"value": float(np.mean(sim)), "ci": [0.0, 1.0]}},
            "plan": {}, "discrepancy": {"value": sparsity / 10},
            "config": {"method": {"name": method}, "eval": {"prompts": {"text": text}}},
            "artifacts": {"images": str(tmp_path / name / "images"),
                          "items": {"geneval": str(tmp_path / name / "geneval.npz"),
                                    "dreamsim": str(tmp_path / name / "dreamsim.npz")}}}


def sweep(tmp_path, toy=True):
    rng = np.random.default_rng(1)
    rows = [write_run(tmp_path, "dense", "dense", 0.0, 0.0, np.ones(N), np.ones(N), toy)]
    for method in ("shortgpt", "skrr"):
        for t in (0.24, 0.32, 0.40):
            rows.append(write_run(tmp_path, f"{method}{t}", method, t, t + 0.004, rng.integers(0, 2, N).astype(float),
                                  rng.uniform(0.3, 1.0, N), toy))
    return rows


def test_prompts_are_seeded_and_one_per_task_in_turn(tmp_path):
    dense = sweep(tmp_path)[0]
    picked = choose_prompts(dense, 6, seed=0)
    assert [p.task for p in picked] == list(TASK_ORDER)  # every task once
    assert [p.key for p in choose_prompts(dense, 6, seed=0)] == [p.key for p in picked]  # seeded
    assert [p.key for p in choose_prompts(dense, 6, seed=1)] != [p.key for p in picked]
    more = choose_prompts(dense, 8, seed=0)
    assert [p.task for p in more] == list(TASK_ORDER) + list(TASK_ORDER[:2]) and len({p.key for p in more}) == 8


def test_grids_caption_each_image_with_its_own_scores_and_show_the_true_scene(tmp_path):
    rows = latest(sweep(tmp_path))
    drawn = grids(rows, tmp_path / "out", "t")
    assert sorted(drawn) == ["grid", "grid_24", "grid_32", "grid_40"]
    for path, _ in drawn.values():
        assert path.is_file() and Image.open(path).size[0] > 600
    _, table = drawn["grid_32"]
    titles = [cell[0] for cell in table[0][2:]]
    assert titles == ["True scene, render", "Dense, 0.0% sparse", "ShortGPT, 32.4% sparse", "Skrr, 32.4% sparse"]
    skrr = next(r for r in rows if r["method"] == "skrr" and r["target"] == 0.32)
    correct = dict(zip(*(lambda it: (it.keys.tolist(), it.values.tolist()))(Items.load(skrr["artifacts"]["items"]["geneval"]))))
    sim = dict(zip(*(lambda it: (it.keys.tolist(), it.values.tolist()))(Items.load(skrr["artifacts"]["items"]["dreamsim"]))))
    scenes = [render(s) for s, _ in prompt_scenes("geneval", N, 0)]
    picked = choose_prompts(rows[0], 6, seed=0)  # the rows' prompts: keys are "seed|prompt", seed = index here
    for p, (prompt, task, truth, dense, _, (_, image, text)) in zip(picked, table):
        key = p.key
        assert prompt == p.text and task == p.task
        assert text == f"GenEval {'✓' if correct[key] else '✗'}  sim {sim[key]:.2f}"
        assert dense[2] == "GenEval ✓"  # dense: its verdict, no similarity to itself
        assert np.array_equal(truth[1], scenes[int(key.partition('|')[0])])  # the true scene of that very prompt
        assert not np.array_equal(image, truth[1])  # the pruned image is the run's own (shifted) image
    _, across = drawn["grid"]
    assert [cell[0] for cell in across[0][2:]] == ["True scene, render", "Dense, 0.0% sparse", "Skrr, 24.4% sparse",
                                                   "Skrr, 32.4% sparse", "Skrr, 40.4% sparse"]


def test_no_true_scene_column_outside_the_toy_world_and_no_grids_without_images(tmp_path):
    rows = latest(sweep(tmp_path, toy=False))
    _, table = grids(rows, tmp_path / "out", "t")["grid_24"]
    assert table[0][2][0] == "Dense, 0.0% sparse"
    for r in rows:
        r.pop("artifacts")
    assert grids(rows, tmp_path / "none", "t") == {}


def test_report_writes_grids_and_logs_them_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    results = tmp_path / "root" / "results" / "t.jsonl"
    results.parent.mkdir(parents=True)
    for r in sweep(tmp_path):
        append_result(results, r)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a swallowed W&B failure would show up as a warning
        files = report(results, tmp_path / "rep", wandb={"project": "skrr-test", "mode": "offline",
                                                           "dir": str(tmp_path / "wb")})["toyworld_v2"]
    assert {"grid", "grid_24", "grid_32", "grid_40"} <= set(files)
    import wandb

    wandb.teardown()
    (run,) = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    images = list((run / "files" / "media" / "images").rglob("*.png"))
    assert {p.parent.name for p in images} >= {"grid", "grid_24", "grid_32", "grid_40"}
    table = json.loads(next((run / "files" / "media" / "table" / "grid_40").glob("*.table.json")).read_text())
    assert table["columns"][:3] == ["prompt", "task", "True scene, render"] and len(table["data"]) == 6


if __name__ == "__main__":
    pytest.main([__file__])
