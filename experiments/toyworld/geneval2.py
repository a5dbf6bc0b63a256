"""A toy GenEval 2: prompts of 3-8 atoms from the toy caption language, and a judge that cannot err.

Prompts come from the caption forms the toy denoiser was trained on, counted in GenEval 2's atoms
(the facts a prompt is checked on): "a ring left of a square" (3: two objects and a relation),
"a red ring and a blue square" (4: two objects and two colours) and the long captions of two to
four objects (4, 6, 8: each object's shape and colour). The long captions also name each object's
grid cell, which is not asked: the toy denoiser does not learn absolute cells (the dense model put
about 1 object in 10 in its cell), so asking would make every long prompt 0 for every method.
Each row is a GenEval 2 row (`prompt`, `atom_count`, `vqa_list`, `skills`) plus `checks`, one
machine-readable check per question, which `ToyJudge` answers from the scene the exact detector
reads off the image: probability 1 for the right answer, 0 otherwise, so a prompt's GM is 1
exactly when every question about it is right (GenEval 2's prompt-level reading).
"""
from __future__ import annotations

import numpy as np

from skrr.errors import InputError
from skrr.eval.geneval.rules import relative_position

from .captions import NUMBERS, sample_example
from .detect import detect
from .scenes import PLURALS, Scene

ATOM_COUNTS = (3, 4, 6, 8)
WORDS = {1: "one", **NUMBERS}


def _object_questions(shape: str) -> list[tuple[str, str, str, list]]:
    """GenEval 2 asks about each named object twice: is it there, and how many (one)."""
    return [(f"Are there any {PLURALS[shape]} in the image?", "Yes", "object", ["exists", shape]),
            (f"How many {PLURALS[shape]} are in the image?", "one", "count", ["count", shape, 1])]


def _row(prompt: str, atoms: int, questions: list[tuple[str, str, str, list]]) -> dict:
    return {"prompt": prompt, "atom_count": atoms, "vqa_list": [[q, a] for q, a, _, _ in questions],
            "skills": [s for _, _, s, _ in questions], "checks": [c for _, _, _, c in questions]}


def _example(atoms: int, rng: np.random.Generator) -> tuple[Scene, dict]:
    task = {3: "position", 4: "color_attr" if rng.random() < 0.5 else "long"}.get(atoms, "long")
    if task != "long":
        scene, text, meta = sample_example(task, rng)
        questions = []
        if task == "color_attr":
            for o in scene.objects:
                questions += _object_questions(o.shape)
                questions.append((f"Is the {o.shape} {o.color}?", "Yes", "attribute", ["color", o.shape, o.color]))
        else:
            target, subject = meta["include"][0]["class"], meta["include"][1]["class"]
            relation = meta["include"][1]["position"][0]
            questions = _object_questions(subject) + _object_questions(target)
            questions.append((f"Is the {subject} {relation} the {target}?", "Yes", "position",
                              ["relation", subject, relation, target]))
        return scene, _row(text, atoms, questions)
    while True:  # a long caption of atoms / 2 objects
        scene, text, _ = sample_example("long", rng)
        if len(scene.objects) == atoms // 2:
            break
    questions = []
    for o in scene.objects:
        questions += [(f"Are there any {PLURALS[o.shape]} in the image?", "Yes", "object", ["exists", o.shape]),
                      (f"Is there a {o.color} {o.shape}?", "Yes", "attribute", ["color", o.shape, o.color])]
    n = len(scene.objects)
    questions.append(("How many shapes are in the image?", WORDS[n], "count", ["count", None, n]))
    return scene, _row(text, atoms, questions)


def prompt_scenes(n: int = 64, seed: int = 0) -> list[tuple[Scene, dict]]:
    """(true scene, row) pairs; the rows are exactly `prompts(n, seed)`."""
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    return [_example(ATOM_COUNTS[i % len(ATOM_COUNTS)], rng) for i in range(n)]


def prompts(n: int = 64, seed: int = 0) -> list[dict]:
    """n toy GenEval 2 rows, atom counts cycling through ATOM_COUNTS (4: two colours, in either form)."""
    return [row for _, row in prompt_scenes(n, seed)]


class ToyJudge:
    """judge(image, row) -> 1.0 or 0.0 per question: the exact detector's reading of the image
    (detections scoring at least `threshold`; counts at least `counting_threshold`, GenEval's
    rule) checked against each of the row's `checks`."""

    def __init__(self, threshold: float = 0.3, counting_threshold: float = 0.9):
        self.threshold, self.counting_threshold = threshold, counting_threshold

    def answer(self, detections, check: list) -> bool:
        kind, *args = check
        seen = [d for d in detections if d.score >= self.threshold]
        if kind == "exists":
            return any(d.label == args[0] for d in seen)
        if kind == "count":
            shape, n = args
            return sum(d.score >= self.counting_threshold and shape in (None, d.label) for d in detections) == n
        if kind == "color":
            return any(d.label == args[0] and d.color == args[1] for d in seen)
        if kind == "relation":
            subject, relation, target = args
            return any(relation in relative_position(a.box, b.box) for a in seen if a.label == subject
                       for b in seen if b.label == target)
        raise InputError(f"unknown toy check {kind!r}")

    def __call__(self, image, row: dict) -> list[float]:
        if "checks" not in row:
            raise InputError(f"the toy judge needs the toy prompts' checks; row {row['prompt']!r} has none")
        detections = detect(image)
        return [float(self.answer(detections, c)) for c in row["checks"]]
