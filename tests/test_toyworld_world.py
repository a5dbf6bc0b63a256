"""The toy world's data: exact rendering, the detector recovering scenes, captions covering GenEval's tasks."""
import numpy as np
import pytest

from skrr.experiments.toyworld import TASKS, calibration_prompts, prompts
from skrr.experiments.toyworld.captions import sample_example, sample_training_example
from skrr.experiments.toyworld.detect import detect
from skrr.experiments.toyworld.pipeline import MAX_LENGTH
from skrr.experiments.toyworld.scenes import COLORS, PALETTE, SHAPE_MASKS, SHAPES, Obj, Scene, relation, render
from skrr.experiments.toyworld.tokenizer import build_tokenizer


def _scene_set(scene):
    return sorted((o.shape, o.color, tuple(float(v) for v in o.box())) for o in scene.objects)


def test_render_is_deterministic_and_draws_exactly_the_stamps():
    scene = Scene((Obj("ring", "red", 0, 0), Obj("cross", "white", 3, 2)))
    a, b = render(scene), render(scene)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert np.array_equal(a[1:7, 1:7].any(axis=2), SHAPE_MASKS["ring"])  # cell (0, 0), 1 px inset
    assert (a[1:7, 1:7][SHAPE_MASKS["ring"]] == PALETTE["red"]).all()
    assert np.array_equal(a[25:31, 17:23].any(axis=2), SHAPE_MASKS["cross"])
    assert a.any(axis=2).sum() == SHAPE_MASKS["ring"].sum() + SHAPE_MASKS["cross"].sum()


def test_shape_stamps_are_mutually_distinct():
    for i, a in enumerate(SHAPES):
        for b in SHAPES[i + 1:]:
            ma, mb = SHAPE_MASKS[a], SHAPE_MASKS[b]
            assert (ma & mb).sum() / (ma | mb).sum() <= 0.6, (a, b)


def test_examples_are_deterministic_from_the_seed():
    draw = lambda seed: [sample_training_example(np.random.default_rng(seed))[1] for _ in range(3)]  # noqa: E731
    assert draw(3) == draw(3)
    assert prompts("geneval", 30, seed=1) == prompts("geneval", 30, seed=1)
    assert prompts("geneval", 30, seed=1) != prompts("geneval", 30, seed=2)
    assert calibration_prompts(5, 0) == calibration_prompts(5, 0)


@pytest.mark.parametrize("task", [*TASKS, "long"])
def test_detector_recovers_every_rendered_scene(task):
    rng = np.random.default_rng(7)
    for _ in range(40):
        scene, _, _ = sample_example(task, rng)
        found = detect(render(scene))
        assert sorted((d.label, d.color, d.box) for d in found) == _scene_set(scene)
        assert all(d.score == 1.0 and d.mask.sum() == SHAPE_MASKS[d.label].sum() for d in found)
        assert detect(render(scene).astype(np.float32) / 255)[0].label == found[0].label  # float images too


def test_detector_reads_colours_and_shapes_off_noisy_pixels():
    scene = Scene((Obj("triangle", "yellow", 1, 1), Obj("square", "purple", 2, 3)))
    noisy = np.clip(render(scene) + np.random.default_rng(0).normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
    assert sorted((d.label, d.color) for d in detect(noisy)) == [("square", "purple"), ("triangle", "yellow")]


def test_prompts_cover_the_six_geneval_tasks_in_geneval_format():
    meta = prompts("geneval", 60, seed=0)
    assert {m["tag"] for m in meta} == set(TASKS)
    for m in meta:
        assert m["prompt"].startswith("a photo of ")
        for req in m["include"]:
            assert req["class"] in SHAPES and req["count"] >= 1 and req.get("color", "red") in COLORS
    counting = [m for m in meta if m["tag"] == "counting"]
    assert all(m["exclude"][0]["count"] == m["include"][0]["count"] + 1 for m in counting)
    position = [m for m in meta if m["tag"] == "position"]
    assert all(m["include"][1]["position"][1] == 0 for m in position)
    assert {m["tag"] for m in prompts("position", 5, 0)} == {"position"}
    with pytest.raises(ValueError, match="task_mix"):
        prompts("nonsense", 5, 0)


def test_scene_satisfies_its_caption():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene, text, meta = sample_example("position", rng)
        target, subject = meta["include"]
        rel = subject["position"][0]
        a = next(o for o in scene.objects if o.shape == subject["class"])
        b = next(o for o in scene.objects if o.shape == target["class"])
        assert relation(a, b) == {rel} and rel in text
        scene, text, meta = sample_example("counting", rng)
        assert len(scene.objects) == meta["include"][0]["count"]


def test_captions_tokenize_within_max_length_without_unknown_words():
    tok = build_tokenizer()
    texts = calibration_prompts(200, 0) + [m["prompt"] for m in prompts("geneval", 60, 0)]
    enc = tok(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True)
    assert all(ids[-1] == tok.pad_token_id or ids[-1] == tok.eos_token_id for ids in enc.input_ids)
    assert max(sum(m) for m in enc.attention_mask) <= MAX_LENGTH
    assert all(tok.unk_token_id not in ids for ids in enc.input_ids)
    assert all(len(ids) - ids.count(tok.pad_token_id) == len(t.split()) + 1 for ids, t in zip(enc.input_ids, texts))


def test_bad_scenes_fail_fast():
    with pytest.raises(ValueError, match="share a cell"):
        Scene((Obj("ring", "red", 0, 0), Obj("cross", "blue", 0, 0)))
    with pytest.raises(ValueError, match="bad object"):
        Scene((Obj("circle", "red", 0, 0),))
