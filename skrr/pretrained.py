"""Pruned encoders as ordinary transformers models: `SkrrT5EncoderModel` (model_type "skrr_t5"),
`SkrrCLIPTextModel` / `SkrrCLIPTextModelWithProjection` ("skrr_clip_text").

The config is the dense one plus a `skrr` entry {format, skip, reuse}; `__init__` builds the
dense architecture on the meta device, removes the skipped sub-blocks, and only then gives the
kept ones real storage. So `save_pretrained` / `from_pretrained` (dtype=, device_map=) and
diffusers' pipeline loading work, and no dense tensor is ever allocated. `import skrr` registers
the classes with AutoConfig / AutoModel.
"""
from __future__ import annotations

import torch
from transformers import (AutoConfig, AutoModel, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                          T5Config, T5EncoderModel)
# diffusers loads a pipeline component of a library it does not know (model_index.json:
# ["skrr.pretrained", "SkrrT5EncoderModel"]) by looking up its loadable base classes by name in
# that module: this import is how it finds PreTrainedModel's from_pretrained.
from transformers import PreTrainedModel  # noqa: F401

from skrr.plan import Plan
from skrr.surgery import apply_plan

FORMAT = 2  # 1: save_pruned's own folder (pruned.json); 2: this transformers-native one


class _SkrrConfigMixin:
    """`skrr = {"format": 2, "skip": [...], "reuse": {"pos": src}}` on top of the dense config."""

    dense_class: type

    def __init__(self, skrr: dict | None = None, **kwargs):
        self.skrr = skrr  # {format, skip, reuse}: the plan the kept weights were saved under
        super().__init__(**kwargs)

    def plan(self) -> Plan:
        s = self.skrr or {}
        return Plan(skip=[int(i) for i in s.get("skip", [])], reuse={int(k): int(v) for k, v in s.get("reuse", {}).items()})

    def dense_config(self):
        """The config of the encoder this one was pruned from (what plans are hashed against)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("skrr", "model_type", "architectures")}
        return self.dense_class(**d)


class SkrrT5Config(_SkrrConfigMixin, T5Config):
    model_type = "skrr_t5"
    dense_class = T5Config


class SkrrCLIPTextConfig(_SkrrConfigMixin, CLIPTextConfig):
    model_type = "skrr_clip_text"
    dense_class = CLIPTextConfig


def _build_pruned(model, init_dense) -> None:
    """Run the dense `__init__` on meta, prune by the config's plan, then allocate the kept weights
    where the caller asked (transformers' from_pretrained already asks for meta and loads later)."""
    device = torch.get_default_device()
    with torch.device("meta"):
        init_dense()
    apply_plan(model, model.config.plan(), changed_weights=False)
    if device.type != "meta":
        model.to_empty(device=device)
        model.init_weights()


class SkrrT5EncoderModel(T5EncoderModel):
    config_class = SkrrT5Config
    _no_split_modules = ["T5AttentionBranch", "T5FFBranch"]

    def __init__(self, config: SkrrT5Config):
        _build_pruned(self, lambda: T5EncoderModel.__init__(self, config))


class SkrrCLIPTextModel(CLIPTextModel):
    config_class = SkrrCLIPTextConfig
    _no_split_modules = ["CLIPAttentionBranch", "CLIPMLPBranch", "CLIPTextEmbeddings"]

    def __init__(self, config: SkrrCLIPTextConfig):
        _build_pruned(self, lambda: CLIPTextModel.__init__(self, config))


class SkrrCLIPTextModelWithProjection(CLIPTextModelWithProjection):
    config_class = SkrrCLIPTextConfig
    _no_split_modules = ["CLIPAttentionBranch", "CLIPMLPBranch", "CLIPTextEmbeddings"]

    def __init__(self, config: SkrrCLIPTextConfig):
        _build_pruned(self, lambda: CLIPTextModelWithProjection.__init__(self, config))


# dense class -> (pruned class, its config class)
PRUNED_CLASSES = {T5EncoderModel: (SkrrT5EncoderModel, SkrrT5Config),
                  CLIPTextModel: (SkrrCLIPTextModel, SkrrCLIPTextConfig),
                  CLIPTextModelWithProjection: (SkrrCLIPTextModelWithProjection, SkrrCLIPTextConfig)}


def pruned_config(model, plan: Plan):
    """The Skrr config for `model` (a dense-class encoder pruned in place by `plan`)."""
    base = next(c for c in type(model).__mro__ if c in PRUNED_CLASSES)
    cls, config_cls = PRUNED_CLASSES[base]
    config = model.config.dense_config() if hasattr(model.config, "dense_config") else model.config
    d = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures")}
    d["skrr"] = {"format": FORMAT, "skip": sorted(plan.skip), "reuse": {str(k): v for k, v in sorted(plan.reuse.items())}}
    out = config_cls(**d)
    out.architectures = [cls.__name__]
    return cls, out


def has_pretrained_class(model) -> bool:
    """Whether a registered Skrr class exists for this encoder (T5, CLIP); decoder-only encoders
    are saved in save_pruned's own folder format instead."""
    return any(c in PRUNED_CLASSES or c in {p for p, _ in PRUNED_CLASSES.values()} for c in type(model).__mro__)


def as_pretrained(model, plan: Plan):
    """Re-label a dense-class encoder pruned in place by `plan` as its Skrr class (same modules, no copy)."""
    if type(model) in {c for c, _ in PRUNED_CLASSES.values()}:
        return model
    cls, config = pruned_config(model, plan)
    model.__class__ = cls
    model.config = config
    return model


def register() -> None:
    for name, config_cls in (("skrr_t5", SkrrT5Config), ("skrr_clip_text", SkrrCLIPTextConfig)):
        AutoConfig.register(name, config_cls, exist_ok=True)
    AutoModel.register(SkrrT5Config, SkrrT5EncoderModel, exist_ok=True)
    AutoModel.register(SkrrCLIPTextConfig, SkrrCLIPTextModel, exist_ok=True)
