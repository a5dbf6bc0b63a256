"""Real prompts for real models: `calibration=builtin` (random captions over a small vocabulary,
made for the tiny twins) is refused for any other model, and `calibration=coco` reads MS-COCO 2014
*train* captions, disjoint from the val2014 captions FID is scored on.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from skrr.errors import InputError, MissingFile

CHOICES = ("calibration=coco calibration.path=<annotations/captions_train2014.json>, "
           "calibration=file calibration.path=<prompts.txt or .jsonl>, "
           "calibration=hf calibration.dataset=<name> calibration.column=<column>")


def check_prompts_fit_model(calibration: DictConfig, model: DictConfig) -> None:
    """Fail before any weight loads when a real model would be calibrated on random captions."""
    if str(calibration.get("source")) != "builtin" or model.get("builtin_calibration"):
        return
    raise InputError(f"calibration=builtin is random captions for tiny and toy models; model "
                     f"{model.get('name')} needs real prompts: {CHOICES}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_coco(path, exclude=None) -> None:
    """Cheap checks of calibration=coco's files, before any model loads (a missing path and the
    numbers are refused when the source is built: skrr.prompts.sources)."""
    path = Path(str(path))
    if not path.is_file():
        raise MissingFile(f"COCO captions file {path} not found (calibration.path)")
    if "val2014" in path.name:
        raise InputError(f"calibration.path={path} holds val2014 captions, which FID is scored on; "
                         "calibrate on captions_train2014.json")
    if exclude is not None and not Path(str(exclude)).is_file():
        raise MissingFile(f"calibration.exclude={exclude} not found (a COCO captions file whose captions to leave out)")


def _read_coco(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        annotations = data["annotations"]
        _ = [a["caption"] for a in annotations]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not a COCO captions file (annotations[].caption): {type(e).__name__}: {e}") from None
    return data


def coco_captions(path: str | os.PathLike, exclude: str | os.PathLike | None = None, pool: int | None = None,
                  seed: int = 0) -> list[str]:
    """The distinct captions of a COCO captions file (whitespace collapsed), without any image or
    caption of `exclude`, in file order; `pool` draws that many of them with `seed` (the length
    filter then tokenizes only these)."""
    path = Path(path)
    data = _read_coco(path)
    images = {im.get("id"): im.get("file_name", "") for im in data.get("images", [])}
    if any("val2014" in name for name in images.values()):
        raise InputError(f"{path} lists val2014 images, which FID is scored on; calibrate on captions_train2014.json")
    drop_ids, drop_text = set(), set()
    if exclude is not None:
        other = _read_coco(Path(exclude))
        drop_ids = {a.get("image_id") for a in other["annotations"]}
        drop_text = {" ".join(a["caption"].split()) for a in other["annotations"]}
    seen, out = set(), []
    for a in data["annotations"]:
        text = " ".join(str(a["caption"]).split())
        if text and text not in seen and text not in drop_text and a.get("image_id") not in drop_ids:
            seen.add(text)
            out.append(text)
    if not out:
        raise InputError(f"{path} has no captions left (calibration.path / calibration.exclude)")
    if pool is not None and pool < len(out):
        out = random.Random(seed).sample(out, pool)
    return out


def calibration_record(cfg: DictConfig, prompts: list[str], key: str) -> dict:
    """What a plan records about its calibration set: source, file and its hash, the sampling, and
    a hash of the very prompts used (so two plans can be compared)."""
    conf = OmegaConf.to_container(cfg, resolve=False)
    rec = {"source": conf.get("source"), "size": len(prompts), "key": key,
           "prompts_sha256": hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]}
    rec.update({k: conf[k] for k in ("seed", "pool", "min_tokens", "max_tokens", "dataset", "split", "column")
                if conf.get(k) is not None})
    for k in ("path", "exclude"):
        p = conf.get(k)
        if isinstance(p, str) and not OmegaConf.is_missing(cfg, k) and Path(p).is_file():
            rec[k], rec[f"{k}_sha256"] = str(p), sha256_file(p)
    return rec
