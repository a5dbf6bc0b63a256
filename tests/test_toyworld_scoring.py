"""The exact GenEval scorer: right on rendered ground truth, wrong on scenes that break the prompt."""
import dataclasses

import numpy as np
import pytest

from skrr.experiments.toyworld import TASKS, prompts
from skrr.experiments.toyworld.captions import sample_example
from skrr.experiments.toyworld.metrics import geneval_results, geneval_scores
from skrr.experiments.toyworld.scenes import COLORS, GRID, SHAPES, Obj, Scene, render


def _examples(task, n=30, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_example(task, rng)[::2] for _ in range(n)]  # (scene, metadata)


def test_ground_truth_renders_score_perfectly_on_all_six_tasks():
    pairs = [p for task in TASKS for p in _examples(task)]
    scores = geneval_scores([render(s) for s, _ in pairs], [m for _, m in pairs])
    assert set(scores) == {*TASKS, "overall"}
    assert all(v == 1.0 for v in scores.values()), scores


def _free_cell(scene):
    used = {(o.row, o.col) for o in scene.objects}
    return next((r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in used)


def _other(seq, value):
    return next(v for v in seq if v != value)


def _break(task, scene, meta):
    """A scene that contradicts the prompt in the way the task tests."""
    objs = list(scene.objects)
    if task in ("single_object", "two_object"):  # an object of the wrong class
        o = objs[-1]
        used = {x.shape for x in objs}
        objs[-1] = dataclasses.replace(o, shape=next(s for s in SHAPES if s not in used))
    elif task == "counting":  # one too many
        r, c = _free_cell(scene)
        objs.append(Obj(objs[0].shape, objs[0].color, r, c))
    elif task in ("colors", "color_attr"):  # the colour moves to the wrong object / changes
        objs[0] = dataclasses.replace(objs[0], color=_other(COLORS, objs[0].color))
    elif task == "position":  # mirror the layout, which flips the relation
        objs = [dataclasses.replace(o, row=GRID - 1 - o.row, col=GRID - 1 - o.col) for o in objs]
    return Scene(tuple(objs))


@pytest.mark.parametrize("task", TASKS)
def test_scenes_that_break_the_prompt_are_scored_wrong(task):
    pairs = _examples(task, seed=1)
    wrong = [render(_break(task, s, m)) for s, m in pairs]
    results = geneval_results(wrong, [m for _, m in pairs])
    assert not any(r["correct"] for r in results), [r for r in results if r["correct"]]


def test_empty_and_mismatched_images_are_wrong():
    meta = prompts("geneval", 12, seed=3)
    blank = np.zeros((12, 32, 32, 3), np.uint8)
    assert geneval_scores(blank, meta)["overall"] == 0.0
    with pytest.raises(ValueError, match="one per image"):
        geneval_results(blank[:5], meta)


def test_prompt_reference_images_are_the_ground_truth_of_prompts():
    from skrr.experiments.toyworld.metrics import prompt_reference_images

    meta, images = prompts("geneval", 36, seed=5), prompt_reference_images("geneval", 36, seed=5)
    assert geneval_scores(images, meta)["overall"] == 1.0
    assert geneval_scores(images[::-1], meta)["overall"] < 0.7  # paired with the wrong prompts
