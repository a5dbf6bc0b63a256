"""The official GenEval evaluator's (djghosh13/geneval) formats: its folder layout, its results
file, its rules. The round trip through a run's row lives in `experiments/report/geneval_official.py`
(the results store is the experiments layer's):

    python -m skrr.experiments.report.geneval_official export --results runs/results/adhoc.jsonl --run-key KEY --out geneval_dir
    # elsewhere: python evaluation/evaluate_images.py geneval_dir --outfile results.jsonl --model-path ...
    python -m skrr.experiments.report.geneval_official import --results runs/results/adhoc.jsonl --run-key KEY --official results.jsonl

`export` writes the official layout (as generation/diffusers_generate.py does): one folder per
prompt, `<dir>/<prompt:05>/metadata.jsonl` (the prompt's metadata, one JSON object) and
`samples/<sample:05>.png`. With a run, it also scores the images with this project's detector and
writes the per-image verdicts in the official results format (`skrr_results.jsonl`).
`import` summarises the official `results.jsonl` by the official rules (per-task mean of
`correct`, overall = mean over tasks) into the row as `metrics.geneval_official`, and, where the
export left this project's verdicts, the per-task agreement of the two detectors per image.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from skrr.errors import InputError, MissingFile
from skrr.eval.geneval.rules import summarize

OURS = "skrr_results.jsonl"
_FILE = re.compile(r"(\d+)[/\\]samples[/\\](\d+)\.png$")


def export_official(images: list[Path], metadata: list[dict], images_per_prompt: int, out_dir: str | os.PathLike) -> Path:
    """Images (image i = sample i % n of prompt i // n) and their per-image metadata -> official layout."""
    if len(images) != len(metadata):
        raise InputError(f"{len(images)} images but {len(metadata)} metadata rows; pass one row per image")
    if images_per_prompt < 1 or len(images) % images_per_prompt:
        raise InputError(f"{len(images)} images do not split into prompts of {images_per_prompt}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        for i, (image, meta) in enumerate(zip(images, metadata)):
            prompt, sample = divmod(i, images_per_prompt)
            folder = tmp / f"{prompt:05}"
            if sample == 0:
                (folder / "samples").mkdir(parents=True)
                (folder / "metadata.jsonl").write_text(json.dumps(_official_metadata(meta)))
            shutil.copyfile(image, folder / "samples" / f"{sample:05}.png")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _official_metadata(meta: dict) -> dict:
    return {k: meta[k] for k in ("tag", "include", "exclude", "prompt") if k in meta}


def read_results(path: str | os.PathLike) -> dict[tuple[int, int], dict]:
    """An official-format results.jsonl -> {(prompt folder, sample): row}. Raises on malformed rows."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no GenEval results at {path}; run the official evaluation/evaluate_images.py")
    rows = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in ("filename", "tag", "correct") if k not in row]
        if missing:
            raise InputError(f"{path}:{n} is not an official GenEval result (missing {missing})")
        m = _FILE.search(row["filename"])
        if m is None:
            raise InputError(f"{path}:{n}: filename {row['filename']!r} is not <prompt>/samples/<n>.png")
        rows[(int(m.group(1)), int(m.group(2)))] = row
    if not rows:
        raise InputError(f"{path} holds no GenEval results")
    return rows


def summarize_official(rows: dict[tuple[int, int], dict]) -> dict:
    """The official summary: per-task mean of `correct`, overall = mean of the tasks; plus counts."""
    scores = summarize(list(rows.values()))
    return {**scores, "images": len(rows), "prompts": len({p for p, _ in rows})}


def agreement(official: dict[tuple[int, int], dict], ours: dict[tuple[int, int], dict]) -> dict:
    """Per task: the share of images on which both detectors give the same verdict, over the images
    both scored; also how often each alone calls an image correct."""
    shared = sorted(set(official) & set(ours))
    if not shared:
        raise InputError("the two result sets share no images (are they of the same export?)")
    by_task: dict[str, list[tuple[bool, bool]]] = {}
    for key in shared:
        by_task.setdefault(official[key]["tag"], []).append((bool(official[key]["correct"]), bool(ours[key]["correct"])))
    out = {}
    for tag, pairs in by_task.items():
        out[tag] = {"agreement": sum(a == b for a, b in pairs) / len(pairs), "images": len(pairs),
                    "official_only": sum(a and not b for a, b in pairs), "ours_only": sum(b and not a for a, b in pairs)}
    every = [p for pairs in by_task.values() for p in pairs]
    out["overall"] = {"agreement": sum(a == b for a, b in every) / len(every), "images": len(every)}
    return out


def score_ours(images: list[Path], metadata: list[dict], metric, images_per_prompt: int) -> list[dict]:
    """This project's detector on the exported images, as official-format rows."""
    from skrr.eval.images import load_images

    verdicts = [v for start in range(0, len(images), 64)
                for v in metric.verdicts(load_images(images[start:start + 64]), metadata[start:start + 64])]
    rows = []
    for i, (result, meta) in enumerate(zip(verdicts, metadata)):
        prompt, sample = divmod(i, images_per_prompt)
        rows.append({"filename": f"{prompt:05}/samples/{sample:05}.png", "tag": result["tag"],
                     "prompt": result["prompt"], "correct": bool(result["correct"]), "reason": result.get("reason", ""),
                     "metadata": json.dumps(_official_metadata(meta))})
    return rows
