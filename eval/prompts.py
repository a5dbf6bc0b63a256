"""Prompt sets for evaluation: MS-COCO captions, GenEval metadata, plain text / JSONL files."""
from __future__ import annotations

import json
import random
from pathlib import Path

COCO_30K = 30_000


def load_coco_captions(captions_json: str, num: int | None = COCO_30K, seed: int = 0) -> list[str]:
    """One caption per image of captions_val2014.json; `num` images sampled with a fixed seed.

    The image set is sampled first (sorted ids, then random.Random(seed).sample), then one of each
    image's captions, so the same seed always gives the same 30k prompts."""
    path = Path(captions_json)
    if not path.is_file():
        raise FileNotFoundError(f"COCO captions file {path} not found; download annotations_trainval2014.zip "
                                "from cocodataset.org and pass annotations/captions_val2014.json")
    annotations = json.loads(path.read_text())["annotations"]
    by_image: dict[int, list[str]] = {}
    for ann in sorted(annotations, key=lambda a: a["id"]):
        by_image.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    image_ids = sorted(by_image)
    rng = random.Random(seed)
    if num is not None:
        if num > len(image_ids):
            raise ValueError(f"asked for {num} COCO captions but the file has {len(image_ids)} images; lower num")
        image_ids = rng.sample(image_ids, num)
    prompts = [rng.choice(by_image[i]).replace("\n", " ") for i in image_ids]
    return _check_nonempty(prompts, path)


def load_geneval_metadata(metadata_jsonl: str) -> list[dict]:
    """GenEval's prompts/evaluation_metadata.jsonl (553 lines): dicts with tag, include, exclude, prompt."""
    path = Path(metadata_jsonl)
    if not path.is_file():
        raise FileNotFoundError(f"GenEval metadata {path} not found; take prompts/evaluation_metadata.jsonl from "
                                "github.com/djghosh13/geneval, or use eval.geneval.prompts.generate_suite offline")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        if "prompt" not in row or "tag" not in row or "include" not in row:
            raise ValueError(f"{path}:{i + 1} is not GenEval metadata (needs tag, include, prompt)")
    _check_nonempty(rows, path)
    return rows


def load_prompt_file(path: str, column: str = "prompt") -> list[str]:
    """Text file (one prompt per line) or JSONL (a `column` field per line, default "prompt")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for i, line in enumerate(lines):
            row = json.loads(line)
            if column not in row:
                raise KeyError(f"{path}:{i + 1} has no {column!r} field (has {sorted(row)}); write one "
                               f"{{{column!r}: ...}} per line or name the field (calibration.column)")
            prompts.append(row[column])
    else:
        prompts = lines
    return _check_nonempty(prompts, path)


def _check_nonempty(items: list, source) -> list:
    if not items:
        raise ValueError(f"prompt set {source} is empty; point it at a file with at least one prompt")
    return items
