"""Evaluation prompt sets: MS-COCO captions, GenEval metadata, prompt lists or plug-in sources (prompt files: skrr.prompts.files)."""
from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path

from skrr.errors import InputError, MissingFile
from skrr.prompts.files import check_nonempty

COCO_30K = 30_000


def load_coco_captions(captions_json: str, num: int | None = COCO_30K, seed: int = 0) -> list[str]:
    """One caption per image of captions_val2014.json; `num` images sampled with a fixed seed.

    The image set is sampled first (sorted ids, then random.Random(seed).sample), then one of each
    image's captions, so the same seed always gives the same 30k prompts."""
    path = Path(captions_json)
    if not path.is_file():
        raise MissingFile(f"COCO captions file {path} not found; download annotations_trainval2014.zip "
                                "from cocodataset.org and pass annotations/captions_val2014.json")
    annotations = json.loads(path.read_text())["annotations"]
    by_image: dict[int, list[str]] = {}
    for ann in sorted(annotations, key=lambda a: a["id"]):
        by_image.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    image_ids = sorted(by_image)
    rng = random.Random(seed)
    if num is not None:
        if num > len(image_ids):
            raise InputError(f"asked for {num} COCO captions but the file has {len(image_ids)} images; lower num")
        image_ids = rng.sample(image_ids, num)
    prompts = [rng.choice(by_image[i]).replace("\n", " ") for i in image_ids]
    return check_nonempty(prompts, path)


def load_geneval_metadata(metadata_jsonl: str) -> list[dict]:
    """GenEval's prompts/evaluation_metadata.jsonl (553 lines): dicts with tag, include, exclude, prompt."""
    path = Path(metadata_jsonl)
    if not path.is_file():
        raise MissingFile(f"GenEval metadata {path} not found; take prompts/evaluation_metadata.jsonl from "
                                "github.com/djghosh13/geneval, or use skrr.eval.geneval.prompts.generate_suite offline")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        if "prompt" not in row or "tag" not in row or "include" not in row:
            raise InputError(f"{path}:{i + 1} is not GenEval metadata (needs tag, include, prompt)")
    check_nonempty(rows, path)
    return rows


def texts_of(prompts: list) -> list[str]:
    """The prompt strings of a prompt set (GenEval metadata dicts carry theirs under "prompt")."""
    return [p["prompt"] if isinstance(p, dict) else p for p in prompts]


def prompt_sets(p) -> dict[str, list]:
    """{'text': prompt strings, 'geneval': metadata dicts (one per image), 'geneval2': GenEval 2 rows
    (one per image)} from an eval config's `prompts`. `text` is a list, or a `_target_` node that
    returns prompts (a plug-in: the toy world's); `coco_captions` replaces it. GenEval's set:
    `geneval_metadata` (the official file), `geneval_generated` (n per task, offline) or a `geneval`
    `_target_` node returning metadata. GenEval 2's: `geneval2_metadata` (the user's
    geneval2_data.jsonl) or a `geneval2` `_target_` node returning rows, each checked;
    `geneval2_images_per_prompt` (default 1, as GenEval 2)."""
    from hydra.utils import instantiate

    from skrr.config.build import with_current_targets
    from skrr.eval.geneval.evaluate import expand_metadata

    def made(node):
        return list(instantiate(with_current_targets(node))) if isinstance(node, Mapping) and "_target_" in node else node

    text = made(p.get("text"))
    text = texts_of(text) if text else None
    if p.get("coco_captions"):
        text = load_coco_captions(p.coco_captions, p.get("coco_num", COCO_30K), p.get("coco_seed", 0))
    metadata = None
    if p.get("geneval_metadata"):
        metadata = load_geneval_metadata(p.geneval_metadata)
    elif p.get("geneval_generated"):
        from skrr.eval.geneval.prompts import generate_suite
        suite = generate_suite(n=p.geneval_generated)
        metadata = [m for m in suite if m["tag"] != "single_object"] + suite[:p.geneval_generated]
    elif p.get("geneval"):
        metadata = made(p.geneval)
    rows = None
    if p.get("geneval2_metadata"):
        from skrr.eval.geneval2.data import load_geneval2
        rows = load_geneval2(p.geneval2_metadata)
    elif p.get("geneval2"):
        from skrr.eval.geneval2.data import check_row
        rows = [check_row(r, f"eval.prompts.geneval2 row {i}") for i, r in enumerate(made(p.geneval2))]
        if not rows:
            raise InputError("eval.prompts.geneval2 gave no GenEval 2 rows")
    sets = {}
    if text is not None:
        sets["text"] = check_nonempty(list(text), "eval.prompts.text")
    if metadata is not None:
        sets["geneval"] = expand_metadata(metadata, p.get("geneval_images_per_prompt", 4))
    if rows is not None:
        sets["geneval2"] = expand_metadata(rows, p.get("geneval2_images_per_prompt", 1))
    return sets
