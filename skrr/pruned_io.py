"""Save a pruned encoder (kept weights only) and load it back without ever materialising the
dense weights: the model is built on the meta device, pruned there, then given the saved tensors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (AutoConfig, CLIPTextModel, CLIPTextModelWithProjection, Gemma2Model, LlamaModel, Qwen2Model,
                          Qwen2_5_VLForConditionalGeneration, T5EncoderModel)

from skrr.atomic import atomic_path
from skrr.plan import Plan
from skrr.surgery import apply_plan

MODEL_CLASSES = {c.__name__: c for c in (T5EncoderModel, CLIPTextModel, CLIPTextModelWithProjection, Gemma2Model,
                                         LlamaModel, Qwen2Model, Qwen2_5_VLForConditionalGeneration)}
WEIGHTS, META = "model.safetensors", "pruned.json"


def save_pruned(model: nn.Module, plan: Plan, directory: str | os.PathLike) -> Path:
    """Write config.json, plan.json, pruned.json and model.safetensors (kept weights) atomically."""
    directory = Path(directory)
    tensors, aliases = {}, {}
    seen: dict[int, str] = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        key = t.data_ptr()
        if key in seen:  # tied weights (T5's shared embedding) are stored once
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().contiguous().cpu()
    persistent = set(model.state_dict())
    meta = {"model_class": type(model).__name__, "aliases": aliases,
            "non_persistent_buffers": sorted(n for n, _ in model.named_buffers() if n not in persistent)}
    with atomic_path(directory, directory=True) as tmp:
        model.config.to_json_file(tmp / "config.json")
        plan.save(tmp / "plan.json")
        (tmp / META).write_text(json.dumps(meta, indent=2))
        with atomic_path(tmp / WEIGHTS) as weights:  # safetensors itself creates files 0600
            save_file(tensors, str(weights))
    return directory


def load_pruned(directory: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild a pruned encoder saved by `save_pruned`; peak memory is about the pruned size."""
    directory = Path(directory)
    for f in ("config.json", "plan.json", META, WEIGHTS):
        if not (directory / f).is_file():
            raise FileNotFoundError(f"{directory} is not a pruned encoder: {f} is missing (write one with skrr.save_pruned)")
    meta = json.loads((directory / META).read_text())
    cls = MODEL_CLASSES[meta["model_class"]]
    config = AutoConfig.from_pretrained(directory)
    plan = Plan.load(directory / "plan.json")
    with torch.device("meta"):
        model = cls(config)
    apply_plan(model, plan, changed_weights=False)
    tensors = load_file(str(directory / WEIGHTS), device=str(device))
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    buffers = {k: tensors.pop(k) for k in meta["non_persistent_buffers"]}
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    missing = set(missing) - set(meta["aliases"])
    if missing or unexpected:
        raise RuntimeError(f"{directory / WEIGHTS} does not match its plan: missing {sorted(missing)[:3]}, "
                           f"unexpected {sorted(unexpected)[:3]}")
    for name, tensor in buffers.items():
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner).register_buffer(leaf, tensor, persistent=False)
    for alias, canonical in meta["aliases"].items():
        owner, _, leaf = alias.rpartition(".")
        src_owner, _, src_leaf = canonical.rpartition(".")
        setattr(model.get_submodule(owner), leaf, getattr(model.get_submodule(src_owner), src_leaf))
    return model.eval()
