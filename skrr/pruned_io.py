"""Save a pruned encoder (kept weights only) and load it back without ever materialising the
dense weights.

Format 2 (written for T5 and CLIP) is a transformers model folder: `config.json` (model_type skrr_t5 /
skrr_clip_text, the plan's skip and re-use under `skrr`), `model.safetensors` and `plan.json`;
`transformers.AutoModel.from_pretrained(dir)` loads it after `import skrr`. Format 1 (folders
with `pruned.json`: earlier versions, and decoder-only encoders, which have no registered Skrr
class yet) loads too: built on meta, pruned there, then given the saved tensors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (AutoConfig, CLIPTextModel, CLIPTextModelWithProjection, Gemma2Model, LlamaModel, Qwen2Model,
                          Qwen2_5_VLForConditionalGeneration, T5EncoderModel)

from skrr.atomic import atomic_path, current_umask
from skrr.plan import Plan
from skrr.pretrained import PRUNED_CLASSES, as_pretrained, has_pretrained_class
from skrr.surgery import apply_plan

MODEL_CLASSES = {c.__name__: c for c in (T5EncoderModel, CLIPTextModel, CLIPTextModelWithProjection, Gemma2Model,
                                         LlamaModel, Qwen2Model, Qwen2_5_VLForConditionalGeneration)}
PRUNED_BY_NAME = {c.__name__: c for c, _ in PRUNED_CLASSES.values()}
WEIGHTS, META_V1 = "model.safetensors", "pruned.json"


def save_pruned(model: nn.Module, plan: Plan, directory: str | os.PathLike) -> Path:
    """Write the pruned encoder as a transformers model folder plus plan.json, atomically."""
    directory = Path(directory)
    if not has_pretrained_class(model):  # decoder-only encoders: the self-describing folder (format 1)
        return _save_format1(model, plan, directory)
    cls, config = type(model), model.config
    try:
        with atomic_path(directory, directory=True) as tmp:
            as_pretrained(model, plan).save_pretrained(tmp)
            plan.save(tmp / "plan.json")
            _honour_umask(tmp)
    finally:  # the caller's model keeps its class and config
        model.__class__, model.config = cls, config
    return directory


def _save_format1(model: nn.Module, plan: Plan, directory: Path) -> Path:
    """config.json, plan.json, pruned.json and model.safetensors (kept weights): the loader builds the
    dense class on meta, prunes it there and assigns these tensors."""
    tensors, aliases = {}, {}
    seen: dict[int, str] = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        key = t.data_ptr()
        if key in seen:  # tied weights are stored once
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
        (tmp / META_V1).write_text(json.dumps(meta, indent=2))
        save_file(tensors, str(tmp / WEIGHTS))
        _honour_umask(tmp)
    return directory


def _honour_umask(root: Path) -> None:
    """safetensors creates its files 0600: give everything under root the mode open()/mkdir() would."""
    mask = current_umask()
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(Path(dirpath) / d, 0o777 & ~mask)
        for f in filenames:
            os.chmod(Path(dirpath) / f, 0o666 & ~mask)


def load_pruned(directory: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild a pruned encoder saved by `save_pruned` (either format); peak memory is about the pruned size."""
    directory = Path(directory)
    for f in ("config.json", "plan.json", WEIGHTS):
        if not (directory / f).is_file():
            raise FileNotFoundError(f"{directory} is not a pruned encoder: {f} is missing (write one with skrr.save_pruned)")
    if (directory / META_V1).is_file():
        return _load_format1(directory, device, dtype)
    arch = (json.loads((directory / "config.json").read_text()).get("architectures") or [None])[0]
    if arch not in PRUNED_BY_NAME:
        raise ValueError(f"{directory}/config.json names {arch!r}, not a skrr pruned encoder ({sorted(PRUNED_BY_NAME)})")
    kwargs = {"dtype": dtype} if dtype is not None else {}
    return PRUNED_BY_NAME[arch].from_pretrained(directory, device_map=str(device), **kwargs).eval()


def _load_format1(directory: Path, device, dtype) -> nn.Module:
    meta = json.loads((directory / META_V1).read_text())
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
    return as_pretrained(model.eval(), plan) if has_pretrained_class(model) else model.eval()


def save_pruned_pipeline(pipe, component: str, plan: Plan, directory: str | os.PathLike) -> Path:
    """Write a complete diffusers pipeline folder whose `component` is the pruned encoder
    (model_index.json names it ["skrr.pretrained", "Skrr..."]), atomically. The plain pipeline
    class loads it: `PixArtSigmaPipeline.from_pretrained(directory)`."""
    directory = Path(directory)
    encoder = getattr(pipe, component)
    cls, config = type(encoder), encoder.config
    try:
        with atomic_path(directory, directory=True) as tmp:
            setattr(pipe, component, as_pretrained(encoder, plan))  # re-registers: model_index.json names the Skrr class
            pipe.save_pretrained(tmp)
            plan.save(tmp / component / "plan.json")
            _honour_umask(tmp)
    finally:
        encoder.__class__, encoder.config = cls, config
        setattr(pipe, component, encoder)
    return directory
