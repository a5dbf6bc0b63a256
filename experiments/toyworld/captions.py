"""Scenes with captions for GenEval's six task types, plus long descriptive captions.

Every example is (scene, caption, metadata); the metadata follows GenEval's format
(`tag`, `include`, optional `exclude`, `prompt`) with shape names as classes. The scene
always satisfies the caption, so it is a training target and a ground truth for the
scorer. Everything is drawn from a numpy Generator: same seed, same examples.
"""
from __future__ import annotations

import numpy as np

from skrr.errors import InputError

from .scenes import COLORS, GRID, PLURALS, SHAPES, Obj, Scene, relation

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four"}
# GenEval's prompts all start "a photo of"; training also sees these variants.
PREFIXES = ("a photo of", "an image of", "a picture of", "a drawing of", "a render of")
ROW_WORDS = ("top", "upper", "lower", "bottom")
COL_WORDS = ("far left", "left", "right", "far right")
LONG_HEADS = ("{n} on a black background :", "a picture of {n} on black :", "a scene with {n} :")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _cells(rng: np.random.Generator, k: int) -> list[tuple[int, int]]:
    flat = rng.choice(GRID * GRID, size=k, replace=False)
    return [(int(i) // GRID, int(i) % GRID) for i in flat]


def _pick(rng, seq, k=1, replace=False):
    idx = rng.choice(len(seq), size=k, replace=replace)
    return [seq[int(i)] for i in idx]


def sample_example(task: str, rng: np.random.Generator, prefix: str = PREFIXES[0]) -> tuple[Scene, str, dict]:
    """One (scene, caption, GenEval metadata) for `task` (one of TASKS or 'long')."""
    if task == "single_object":
        (shape,), (color,), ((r, c),) = _pick(rng, SHAPES), _pick(rng, COLORS), _cells(rng, 1)
        scene = Scene((Obj(shape, color, r, c),))
        text = f"{prefix} {_article(shape)} {shape}"
        include = [{"class": shape, "count": 1}]
        meta = {"tag": task, "include": include}
    elif task == "two_object":
        shapes, colors, cells = _pick(rng, SHAPES, 2), _pick(rng, COLORS, 2, True), _cells(rng, 2)
        scene = Scene(tuple(Obj(s, k, r, c) for s, k, (r, c) in zip(shapes, colors, cells)))
        text = f"{prefix} {_article(shapes[0])} {shapes[0]} and {_article(shapes[1])} {shapes[1]}"
        meta = {"tag": task, "include": [{"class": s, "count": 1} for s in shapes]}
    elif task == "counting":
        (shape,), n = _pick(rng, SHAPES), int(rng.integers(2, 5))
        colors = _pick(rng, COLORS, n, True) if rng.random() < 0.5 else _pick(rng, COLORS) * n
        scene = Scene(tuple(Obj(shape, k, r, c) for k, (r, c) in zip(colors, _cells(rng, n))))
        text = f"{prefix} {NUMBERS[n]} {PLURALS[shape]}"
        meta = {"tag": task, "include": [{"class": shape, "count": n}], "exclude": [{"class": shape, "count": n + 1}]}
    elif task == "colors":
        (shape,), (color,), ((r, c),) = _pick(rng, SHAPES), _pick(rng, COLORS), _cells(rng, 1)
        scene = Scene((Obj(shape, color, r, c),))
        text = f"{prefix} {_article(color)} {color} {shape}"
        meta = {"tag": task, "include": [{"class": shape, "count": 1, "color": color}]}
    elif task == "position":
        (subject, target), colors, (rel,) = _pick(rng, SHAPES, 2), _pick(rng, COLORS, 2, True), _pick(rng, RELATIONS)
        while True:  # rejection: the relation must be the only one GenEval's rule sees
            (r0, c0), (r1, c1) = _cells(rng, 2)
            a, b = Obj(subject, colors[0], r0, c0), Obj(target, colors[1], r1, c1)
            if relation(a, b) == {rel}:
                break
        scene = Scene((a, b))
        text = f"{prefix} {_article(subject)} {subject} {rel} {_article(target)} {target}"
        meta = {"tag": task, "include": [{"class": target, "count": 1},
                                         {"class": subject, "count": 1, "position": [rel, 0]}]}
    elif task == "color_attr":
        shapes, colors, cells = _pick(rng, SHAPES, 2), _pick(rng, COLORS, 2), _cells(rng, 2)
        scene = Scene(tuple(Obj(s, k, r, c) for s, k, (r, c) in zip(shapes, colors, cells)))
        text = (f"{prefix} {_article(colors[0])} {colors[0]} {shapes[0]} and "
                f"{_article(colors[1])} {colors[1]} {shapes[1]}")
        meta = {"tag": task, "include": [{"class": s, "count": 1, "color": k} for s, k in zip(shapes, colors)]}
    elif task == "long":
        scene, text = _long_example(rng)
        meta = {"tag": task, "include": _exact_include(scene)}
    else:
        raise InputError(f"unknown task {task!r}; use one of {TASKS + ('long',)}")
    meta["prompt"] = text
    return scene, text, meta


def _long_example(rng: np.random.Generator) -> tuple[Scene, str]:
    """A caption that pins down every object's shape, colour and cell."""
    n = int(rng.integers(1, 5))
    objs = [Obj(s, k, r, c) for s, k, (r, c) in zip(_pick(rng, SHAPES, n, True), _pick(rng, COLORS, n, True),
                                                     _cells(rng, n))]
    objs.sort(key=lambda o: (o.row, o.col))
    head = _pick(rng, LONG_HEADS)[0].format(n="one shape" if n == 1 else f"{NUMBERS[n]} shapes")
    parts = [f"{_article(o.color)} {o.color} {o.shape} at the {ROW_WORDS[o.row]} {COL_WORDS[o.col]}" for o in objs]
    return Scene(tuple(objs)), f"{head} {' , '.join(parts)}"


def _exact_include(scene: Scene) -> list[dict]:
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[(o.shape, o.color)] = counts.get((o.shape, o.color), 0) + 1
    return [{"class": s, "count": n, "color": k} for (s, k), n in sorted(counts.items())]


def vocabulary() -> list[str]:
    """Every word the caption grammar can produce (the tokenizer's vocabulary)."""
    text = " ".join([*PREFIXES, *ROW_WORDS, *COL_WORDS, *RELATIONS, *NUMBERS.values(), *SHAPES,
                     *PLURALS.values(), *COLORS, *LONG_HEADS, "a an and at the one shape shapes ,"])
    return sorted(set(text.replace("{n}", " ").split()))


# Denoiser training mix: the six GenEval tasks plus long captions that fix whole layouts.
TRAIN_MIX = {"single_object": 0.12, "two_object": 0.13, "counting": 0.13, "colors": 0.12,
             "position": 0.15, "color_attr": 0.15, "long": 0.20}


def sample_training_example(rng: np.random.Generator) -> tuple[Scene, str, dict]:
    tasks = list(TRAIN_MIX)
    task = tasks[int(rng.choice(len(tasks), p=np.array(list(TRAIN_MIX.values())) / sum(TRAIN_MIX.values())))]
    prefix = _pick(rng, PREFIXES)[0]
    return sample_example(task, rng, prefix)


def prompts(task_mix: str = "geneval", n: int = 96, seed: int = 0) -> list[dict]:
    """GenEval-style metadata dicts (`tag`, `include`, [`exclude`], `prompt`) for evaluation.

    task_mix 'geneval' cycles through the six tasks (n/6 each) with GenEval's "a photo of"
    wording; a single task name draws only that task.
    """
    return [meta for _, meta in prompt_scenes(task_mix, n, seed)]


def prompt_scenes(task_mix: str = "geneval", n: int = 96, seed: int = 0) -> list[tuple[Scene, dict]]:
    """(ground-truth scene, metadata) pairs; the metadata are exactly `prompts(task_mix, n, seed)`."""
    if task_mix == "geneval":
        order = TASKS
    elif task_mix in TASKS:
        order = (task_mix,)
    else:
        raise InputError(f"unknown task_mix {task_mix!r}; use 'geneval' or one of {TASKS}")
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    return [sample_example(order[i % len(order)], rng)[::2] for i in range(n)]


def calibration_prompts(n: int = 64, seed: int = 0) -> list[str]:
    """Long descriptive captions (every object's colour, shape and place), for calibration."""
    rng = np.random.default_rng(seed)
    return [sample_example("long", rng)[1] for _ in range(n)]
