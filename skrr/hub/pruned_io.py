"""Save a pruned encoder (kept weights only) and load it back without ever materialising the
dense weights.

Format 2 is a transformers model folder: `config.json` (model_type skrr_t5, skrr_clip_text,
skrr_gemma2, skrr_llama, skrr_qwen2 or skrr_qwen2_5_vl; the plan's skip and re-use under `skrr`;
`auto_map` naming `modeling_skrr.py`), `model.safetensors`, `plan.json`, `modeling_skrr.py` (made
from skrr's own source, skrr/hub/remote_code.py) and a model card, `README.md`.
`transformers.AutoModel.from_pretrained(dir)` loads it after `import skrr.hub.pretrained`, and with
`trust_remote_code=True` where skrr is not installed. Format 1 (folders with `pruned.json`, which
earlier versions wrote) still loads: built on meta, pruned there, then given the saved tensors."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Gemma2Model,
    LlamaModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Model,
    T5EncoderModel,
)

from skrr.encoders.surgery import apply_plan
from skrr.errors import InputError, MissingFile, Unsupported
from skrr.hub.atomic import atomic_path, current_umask
from skrr.hub.model_card import card_facts, write_card
from skrr.hub.pretrained import PRUNED_CLASSES, as_pretrained, has_pretrained_class
from skrr.hub.remote_code import MODULE_FILE, MODULE_NAME, auto_map, modeling_source
from skrr.plan import Plan

MODEL_CLASSES = {c.__name__: c for c in (T5EncoderModel, CLIPTextModel, CLIPTextModelWithProjection, Gemma2Model,
                                         LlamaModel, Qwen2Model, Qwen2_5_VLForConditionalGeneration)}
PRUNED_BY_NAME = {c.__name__: c for c, _ in PRUNED_CLASSES.values()}
WEIGHTS, META_V1 = "model.safetensors", "pruned.json"


def save_pruned(model: nn.Module, plan: Plan, directory: str | os.PathLike, source: dict | None = None) -> Path:
    """Write the pruned encoder as a transformers model folder with its modelling file, plan.json
    and model card, atomically. `source` (model, pretrained, pipeline_class, component) goes into
    the card."""
    directory = Path(directory)
    if not has_pretrained_class(model):
        raise Unsupported(f"skrr has no pruned class for {type(model).__name__} ({sorted(PRUNED_BY_NAME)})")
    card_plan = _with_card(plan, model, source)
    cls, config = type(model), model.config
    try:
        with atomic_path(directory, directory=True) as tmp:
            _save_component(as_pretrained(model, plan), card_plan, tmp)
            write_card(tmp, load_from=str(directory))
            _honour_umask(tmp)
    finally:  # the caller's model keeps its class and config
        model.__class__, model.config = cls, config
    return directory


def _with_card(plan: Plan, model: nn.Module, source: dict | None) -> Plan:
    """A copy of `plan` whose info carries what the model card says (the caller's plan is unchanged)."""
    info = {**{k: v for k, v in plan.info.items() if not k.startswith("_")}, "card": card_facts(model, plan, source)}
    return replace(plan, info=info)


def _save_component(model: nn.Module, plan: Plan, directory: Path) -> None:
    """save_pretrained with `auto_map` pointing at the modelling file written beside it."""
    model.config.auto_map = auto_map(type(model).__name__, type(model.config).__name__)
    model.save_pretrained(directory)
    (directory / MODULE_FILE).write_text(modeling_source())
    plan.save(directory / "plan.json")


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
            raise MissingFile(f"{directory} is not a pruned encoder: {f} is missing (write one with skrr.save_pruned)")
    if (directory / META_V1).is_file():
        return _load_format1(directory, device, dtype)
    arch = (json.loads((directory / "config.json").read_text()).get("architectures") or [None])[0]
    if arch not in PRUNED_BY_NAME:
        raise InputError(f"{directory}/config.json names {arch!r}, not a skrr pruned encoder ({sorted(PRUNED_BY_NAME)})")
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


def save_pruned_pipeline(pipe, component: str, plan: Plan, directory: str | os.PathLike,
                         source: dict | None = None) -> Path:
    """Write a complete diffusers pipeline folder whose `component` is the pruned encoder, with a
    model card, atomically. model_index.json names the component ["modeling_skrr", "Skrr..."],
    the modelling file in its folder: `DiffusionPipeline.from_pretrained(directory,
    trust_remote_code=True)` loads it without skrr; with skrr, pass the component:
    `Pipeline.from_pretrained(directory, text_encoder=skrr.load_pruned(directory / "text_encoder"))`."""
    directory = Path(directory)
    encoder = getattr(pipe, component)
    source = {"component": component, "pipeline_class": type(pipe).__name__, **(source or {})}
    card_plan = _with_card(plan, encoder, source)
    cls, config = type(encoder), encoder.config
    try:
        with atomic_path(directory, directory=True) as tmp:
            pruned = as_pretrained(encoder, plan)
            setattr(pipe, component, pruned)  # re-registers the component under its Skrr class
            pruned.config.auto_map = auto_map(type(pruned).__name__, type(pruned.config).__name__)
            pipe.save_pretrained(tmp)
            (tmp / component / MODULE_FILE).write_text(modeling_source())
            card_plan.save(tmp / component / "plan.json")
            index = json.loads((tmp / "model_index.json").read_text())
            index[component] = [MODULE_NAME, type(pruned).__name__]  # diffusers' custom-component form
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
            write_card(tmp, load_from=str(directory))
            _honour_umask(tmp)
    finally:
        encoder.__class__, encoder.config = cls, config
        setattr(pipe, component, encoder)
    return directory
