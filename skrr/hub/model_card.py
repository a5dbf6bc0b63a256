"""The model card (README.md with Hub metadata) of a pruned folder, rendered from the folder itself:
plan.json (method, skip, re-use, sparsity, final D, calibration, and `info.card`: base model,
pipeline, sizes, metrics, written by save_pruned) and config.json. So `skrr-push` can render it
again with the repository id in the loading lines, and skrr-run can add the metrics it measured.
"""
from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

from skrr.errors import MissingFile

CARD = "README.md"
# how the Hub's metadata names what a local path cannot be: a hub id has one slash and no leading dot
_HUB_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def is_hub_id(name) -> bool:
    parts = str(name or "").split("/")
    return (len(parts) == 2 and all(parts) and all(set(p) <= _HUB_ID_CHARS for p in parts)
            and not str(name).startswith((".", "/")) and not Path(str(name)).exists())


def card_facts(model, plan, source: dict | None = None) -> dict:
    """What the card says about the encoder in memory (a pruned one): parameters and bytes before
    and after, counted over the part of the encoder that sparsity counts."""
    from skrr.encoders.decoder_only import tower
    from skrr.encoders.view import total_params

    params = list(tower(model).parameters())
    pruned_bytes = sum(p.numel() * p.element_size() for p in params)
    pruned_params = sum(p.numel() for p in params)
    dense_params = total_params(model)
    element = params[0].element_size() if params else 0
    return {**(source or {}), "encoder_class": type(model).__name__, "dtype": str(params[0].dtype) if params else None,
            "params_dense": dense_params, "params_pruned": pruned_params,
            "bytes_dense": pruned_bytes + (dense_params - pruned_params) * element, "bytes_pruned": pruned_bytes}


def _encoder_dir(folder: Path) -> tuple[Path, dict | None]:
    """(the folder holding plan.json and config.json, the pipeline's model_index or None)."""
    index = folder / "model_index.json"
    if not index.is_file():
        return folder, None
    model_index = json.loads(index.read_text())
    for name, entry in model_index.items():
        if isinstance(entry, list) and (folder / name / "plan.json").is_file():
            return folder / name, model_index
    raise MissingFile(f"{folder} is a pipeline folder without a pruned component (no <component>/plan.json)")


def render_card(folder: str | os.PathLike, load_from: str | None = None) -> str:
    __version__ = version("skrr")  # the installed distribution's (not skrr.__version__: no import back up)

    folder = Path(folder)
    enc_dir, model_index = _encoder_dir(folder)
    plan = json.loads((enc_dir / "plan.json").read_text())
    config = json.loads((enc_dir / "config.json").read_text())
    info = plan.get("info") or {}
    card = info.get("card") or {}
    pipeline = model_index is not None
    where = load_from or str(folder)
    base = card.get("pretrained")
    method = dict(plan.get("method") or {})
    name = method.pop("name", None) or "unknown"
    cls = (config.get("architectures") or ["?"])[0]
    component = enc_dir.name if pipeline else card.get("component", "text_encoder")

    meta = ["---", f"library_name: {'diffusers' if pipeline else 'transformers'}",
            f"pipeline_tag: {'text-to-image' if pipeline else 'feature-extraction'}"]
    if is_hub_id(base):  # (the Hub's base_model_relation has no value for a pruned model: left out)
        meta += ["base_model:", f"- {base}"]
    meta += ["tags:", "- skrr", "- pruning", "- text-encoder", "- text-to-image", f"- pruning-method-{name}", "---", ""]

    sparsity = plan.get("sparsity")
    target = info.get("target")
    lines = [f"# {card.get('model') or base or 'encoder'}: text encoder pruned with skrr (method `{name}`)", "",
             f"{'A diffusers pipeline whose' if pipeline else 'The'} text encoder "
             f"(`{component}`, {cls}) is pruned at sub-block level with "
             f"[skrr](https://arxiv.org/abs/2502.08690) {__version__}: skipped sub-blocks are removed "
             "and re-used positions call a kept sub-block again (shared weights, no copy).", "",
             "| | |", "|---|---|",
             f"| base model | {_code(base) if base else 'unknown'} |",
             f"| pipeline | {_code(card.get('pipeline_class') or (model_index or {}).get('_class_name') or 'unknown')} |",
             f"| skrr model config | {_code(card.get('model') or (plan.get('encoder') or {}).get('name'))} |",
             f"| method | {_code(name)} |",
             f"| settings | {_settings(method)} |",
             f"| sub-blocks | {(plan.get('encoder') or {}).get('num_sub_blocks', '?')} (2b: block b's attention, 2b+1: its feed-forward) |",
             f"| skipped | {_code(plan.get('skip'))} |",
             f"| re-used (position: kept sub-block it runs) | {_code(plan.get('reuse') or {})} |",
             f"| sparsity | {_pct(sparsity)}{f' (target {_pct(target)})' if target is not None else ''} |"]
    if card.get("params_dense"):
        lines += [f"| parameters | {card['params_dense']:,} -> {card['params_pruned']:,} |",
                  f"| bytes ({card.get('dtype')}) | {card['bytes_dense']:,} -> {card['bytes_pruned']:,} "
                  f"({card['bytes_pruned'] / card['bytes_dense']:.3f} x) |"]
    if info.get("d_final") is not None:
        lines.append(f"| final D (discrepancy on the calibration set) | {info['d_final']:.6g} |")
    lines += ["", "## Calibration", ""]
    calib = info.get("calibration") or {}
    if calib:
        lines += [f"- {k}: {_code(v)}" for k, v in calib.items()]
    else:
        lines.append("- not recorded (a hand-written or preset plan)")
    metrics = card.get("metrics")
    if metrics:
        lines += ["", "## Measured by skrr-run", ""]
        lines += [f"- {k}: {_code(v)}" for k, v in metrics.items()]
    lines += ["", "## Load it", "", "Without skrr (the folder carries `modeling_skrr.py`, made from skrr's own source):", "",
              "```python"]
    if pipeline:
        lines += ["from diffusers import DiffusionPipeline", "",
                  f"pipe = DiffusionPipeline.from_pretrained({where!r}, trust_remote_code=True)"]
    else:
        lines += ["from transformers import AutoModel", "",
                  f"encoder = AutoModel.from_pretrained({where!r}, trust_remote_code=True)"]
    lines += ["```", "", "With skrr installed (`pip install skrr`), no remote code runs:", "", "```python"]
    lines += _with_skrr(where, component, (model_index or {}).get("_class_name") if pipeline else None)
    lines += ["```", ""]
    return "\n".join(meta + lines)


def _with_skrr(where: str, component: str, pipeline_class: str | None) -> list[str]:
    """Loading lines for an environment with skrr: its registered classes, no trust_remote_code."""
    hub = is_hub_id(where)
    if pipeline_class is None:
        if hub:
            return ["import skrr.hub.pretrained  # registers the Skrr classes with AutoModel", "import transformers", "",
                    f"encoder = transformers.AutoModel.from_pretrained({where!r})"]
        return ["import skrr", "", f"encoder = skrr.load_pruned({where!r})"]
    load = (f"transformers.AutoModel.from_pretrained({where!r}, subfolder={component!r})" if hub
            else f"skrr.load_pruned({str(Path(where) / component)!r})")
    return ["import skrr", *(["import skrr.hub.pretrained  # registers the Skrr classes", "import transformers"] if hub else []), f"from diffusers import {pipeline_class}", "",
            f"encoder = {load}", f"pipe = {pipeline_class}.from_pretrained({where!r}, {component}=encoder)"]


def write_card(folder: str | os.PathLike, load_from: str | None = None) -> Path:
    path = Path(folder) / CARD
    path.write_text(render_card(folder, load_from))
    return path


def _code(v) -> str:
    return f"`{json.dumps(v) if not isinstance(v, str) else v}`"


def _pct(v) -> str:
    return "?" if v is None else f"{float(v):.2%}"


def _settings(method: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in method.items()) or "-"
