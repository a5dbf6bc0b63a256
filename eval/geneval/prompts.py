"""GenEval-style prompts generated offline, mirroring the official prompts/create_prompts.py."""
from __future__ import annotations

import json

import numpy as np

from skrr.eval.geneval.rules import COLORS

# GenEval's object_names.txt: the 80 COCO classes in detector order (mouse/remote/keyboard renamed).
CLASSNAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
POSITIONS = ["left of", "right of", "above", "below"]


def with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def make_plural(name: str) -> str:
    return f"{name}es" if name[-1] == "s" else f"{name}s"


def _no_person(rng, classnames, size=None):
    """Class indices skipping 'person' (the official rule: no '[colour] person' prompts)."""
    person = classnames.index("person")
    idx = rng.choice(len(classnames) - 1, size=size, replace=False) + 1
    return (idx + person) % len(classnames)


def generate_suite(n: int = 100, seed: int = 43, classnames: list[str] = CLASSNAMES,
                   colors: list[str] = COLORS) -> list[dict]:
    """All six tasks: one single_object prompt per class, then n of each other task, de-duplicated."""
    rng = np.random.default_rng(seed)
    k = len(classnames)
    samples = [dict(tag="single_object", include=[{"class": classnames[i], "count": 1}],
                    prompt=f"a photo of {with_article(classnames[i])}")
               for i in rng.choice(k, size=k, replace=False)]
    for _ in range(n):
        a, b = rng.choice(k, size=2, replace=False)
        samples.append(dict(tag="two_object", include=[{"class": classnames[a], "count": 1},
                                                       {"class": classnames[b], "count": 1}],
                            prompt=f"a photo of {with_article(classnames[a])} and {with_article(classnames[b])}"))
    for _ in range(n):
        i = rng.choice(k)
        num = int(rng.integers(2, 4, endpoint=True))
        samples.append(dict(tag="counting", include=[{"class": classnames[i], "count": num}],
                            exclude=[{"class": classnames[i], "count": num + 1}],
                            prompt=f"a photo of {NUMBERS[num]} {make_plural(classnames[i])}"))
    for _ in range(n):
        i = int(_no_person(rng, classnames))
        color = colors[rng.choice(len(colors))]
        samples.append(dict(tag="colors", include=[{"class": classnames[i], "count": 1, "color": color}],
                            prompt=f"a photo of {with_article(color)} {classnames[i]}"))
    for _ in range(n):
        a, b = rng.choice(k, size=2, replace=False)
        rel = POSITIONS[rng.choice(len(POSITIONS))]
        samples.append(dict(tag="position", include=[{"class": classnames[b], "count": 1},
                                                     {"class": classnames[a], "count": 1, "position": [rel, 0]}],
                            prompt=f"a photo of {with_article(classnames[a])} {rel} {with_article(classnames[b])}"))
    for _ in range(n):
        a, b = _no_person(rng, classnames, size=2)
        ca, cb = rng.choice(len(colors), size=2, replace=False)
        samples.append(dict(tag="color_attr",
                            include=[{"class": classnames[a], "count": 1, "color": colors[ca]},
                                     {"class": classnames[b], "count": 1, "color": colors[cb]}],
                            prompt=f"a photo of {with_article(colors[ca])} {classnames[a]} and "
                                   f"{with_article(colors[cb])} {classnames[b]}"))
    unique, seen = [], set()
    for s in samples:
        key = json.dumps(s, sort_keys=True)
        if key not in seen:
            unique.append(s)
            seen.add(key)
    return unique
