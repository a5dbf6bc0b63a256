"""Pruned encoders as ordinary transformers models: `SkrrT5EncoderModel` (model_type "skrr_t5"),
`SkrrUMT5EncoderModel` ("skrr_umt5": Wan's umT5-XXL), `SkrrGemma3ForConditionalGeneration` ("skrr_gemma3":
LTX-2's Gemma-3, built without its vision tower),
`SkrrCLIPTextModel` / `SkrrCLIPTextModelWithProjection` ("skrr_clip_text"), and the decoder-only
ones `SkrrGemma2Model` ("skrr_gemma2"), `SkrrLlamaModel` and `SkrrLlamaForCausalLM` ("skrr_llama": HiDream's,
built without its LM head), `SkrrQwen2Model` and
`SkrrQwen2_5_VLForConditionalGeneration` ("skrr_qwen2_5_vl") and `SkrrMistral3ForConditionalGeneration`
("skrr_mistral3": FLUX.2-dev's encoder, built without its vision tower and LM head), `SkrrQwen3Model` and
`SkrrQwen3ForCausalLM` ("skrr_qwen3": Z-Image's and FLUX.2-klein's).

The config is the dense one plus a `skrr` entry {format, skip, reuse}; `__init__` builds the
dense architecture on the meta device, removes the skipped sub-blocks, and only then gives the
kept ones real storage. So `save_pretrained` / `from_pretrained` (dtype=, device_map=) and
diffusers' pipeline loading work, and no dense tensor is ever allocated. Importing this module
registers the classes with AutoConfig / AutoModel. `skrr.hub.remote_code` copies this module's classes (with the
sub-block view they build) into the `modeling_skrr.py` that save_pruned writes beside the weights,
so a folder also loads where skrr is not installed (trust_remote_code=True).
"""
from __future__ import annotations

import sys

import torch

# A pipeline folder names its pruned component ["modeling_skrr", "Skrr..."]; with this module imported,
# `modeling_skrr` is this module (see the end of it), and diffusers checks a component passed in
# against the loadable base classes it looks up by name here: this import is how it finds PreTrainedModel.
from transformers import (
    AutoConfig,
    AutoModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Gemma2Config,
    Gemma2Model,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    PreTrainedModel,  # noqa: F401
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2Model,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

from skrr.encoders.surgery import cut
from skrr.encoders.view import to_sub_blocks
from skrr.plan import Plan

FORMAT = 2  # 1: save_pruned's own folder (pruned.json); 2: this transformers-native one


class _SkrrConfigMixin:
    """`skrr = {"format": 2, "skip": [...], "reuse": {"pos": src}}` on top of the dense config."""

    dense_class: type

    def __init__(self, skrr: dict | None = None, **kwargs):
        self.skrr = skrr  # {format, skip, reuse}: the plan the kept weights were saved under
        super().__init__(**kwargs)

    def skip_and_reuse(self) -> tuple[list[int], dict[int, int]]:
        s = self.skrr or {}
        return [int(i) for i in s.get("skip", [])], {int(k): int(v) for k, v in s.get("reuse", {}).items()}

    def dense_config(self):
        """The config of the encoder this one was pruned from (what plans are hashed against)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("skrr", "model_type", "architectures")}
        return self.dense_class(**d)


class SkrrT5Config(_SkrrConfigMixin, T5Config):
    model_type = "skrr_t5"
    dense_class = T5Config


class SkrrUMT5Config(_SkrrConfigMixin, UMT5Config):
    model_type = "skrr_umt5"
    dense_class = UMT5Config


class SkrrGemma3Config(_SkrrConfigMixin, Gemma3Config):
    model_type = "skrr_gemma3"
    dense_class = Gemma3Config


class SkrrCLIPTextConfig(_SkrrConfigMixin, CLIPTextConfig):
    model_type = "skrr_clip_text"
    dense_class = CLIPTextConfig


class SkrrGemma2Config(_SkrrConfigMixin, Gemma2Config):
    model_type = "skrr_gemma2"
    dense_class = Gemma2Config


class SkrrLlamaConfig(_SkrrConfigMixin, LlamaConfig):
    model_type = "skrr_llama"
    dense_class = LlamaConfig


class SkrrQwen2Config(_SkrrConfigMixin, Qwen2Config):
    model_type = "skrr_qwen2"
    dense_class = Qwen2Config


class SkrrQwen2_5_VLConfig(_SkrrConfigMixin, Qwen2_5_VLConfig):
    model_type = "skrr_qwen2_5_vl"
    dense_class = Qwen2_5_VLConfig


class SkrrQwen3Config(_SkrrConfigMixin, Qwen3Config):
    model_type = "skrr_qwen3"
    dense_class = Qwen3Config


class SkrrMistral3Config(_SkrrConfigMixin, Mistral3Config):
    model_type = "skrr_mistral3"
    dense_class = Mistral3Config


def _build_pruned(model, init_dense) -> None:
    """Run the dense `__init__` on meta, prune by the config's plan, then allocate the kept weights
    where the caller asked (transformers' from_pretrained already asks for meta and loads later)."""
    device = torch.get_default_device()
    with torch.device("meta"):
        init_dense()
    skip, reuse = model.config.skip_and_reuse()
    cut(to_sub_blocks(model), skip, reuse)
    if device.type != "meta":
        model.to_empty(device=device)
        model.init_weights()


class SkrrT5EncoderModel(T5EncoderModel):
    config_class = SkrrT5Config
    _no_split_modules = ["T5AttentionBranch", "T5FFBranch"]

    def __init__(self, config: SkrrT5Config):
        _build_pruned(self, lambda: T5EncoderModel.__init__(self, config))


class SkrrUMT5EncoderModel(UMT5EncoderModel):
    """Wan's umT5-XXL encoder, pruned."""
    config_class = SkrrUMT5Config
    _no_split_modules = ["UMT5AttentionBranch", "T5FFBranch"]

    def __init__(self, config: SkrrUMT5Config):
        _build_pruned(self, lambda: UMT5EncoderModel.__init__(self, config))


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


_DECODER_BRANCHES = ["DecoderAttentionBranch", "DecoderMLPBranch"]


class SkrrGemma2Model(Gemma2Model):
    config_class = SkrrGemma2Config
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrGemma2Config):
        _build_pruned(self, lambda: Gemma2Model.__init__(self, config))


class SkrrLlamaModel(LlamaModel):
    config_class = SkrrLlamaConfig
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrLlamaConfig):
        _build_pruned(self, lambda: LlamaModel.__init__(self, config))


class SkrrLlamaForCausalLM(LlamaForCausalLM):
    """HiDream's Llama: the stack pruned; the untied LM head, whose logits the pipeline throws away, is
    not built (a `NoLogits` stands in, so the class's forward still returns `hidden_states`)."""
    config_class = SkrrLlamaConfig
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrLlamaConfig):
        _build_pruned(self, lambda: LlamaForCausalLM.__init__(self, config))


class SkrrQwen2Model(Qwen2Model):
    config_class = SkrrQwen2Config
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrQwen2Config):
        _build_pruned(self, lambda: Qwen2Model.__init__(self, config))


class SkrrQwen2_5_VLForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    config_class = SkrrQwen2_5_VLConfig
    _no_split_modules = [*_DECODER_BRANCHES, "Qwen2_5_VLVisionBlock"]

    def __init__(self, config: SkrrQwen2_5_VLConfig):
        _build_pruned(self, lambda: Qwen2_5_VLForConditionalGeneration.__init__(self, config))

    def save_pretrained(self, *args, save_original_format: bool = False, **kwargs):
        """Saved under the module names it loads by: transformers would rename them to the legacy
        Qwen2.5-VL layout, whose renaming back it keys on the dense class name, not this one."""
        return super().save_pretrained(*args, save_original_format=save_original_format, **kwargs)


class SkrrQwen3Model(Qwen3Model):
    config_class = SkrrQwen3Config
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrQwen3Config):
        _build_pruned(self, lambda: Qwen3Model.__init__(self, config))


class SkrrQwen3ForCausalLM(Qwen3ForCausalLM):
    """FLUX.2-klein's encoder: the LM head stays (tied to the embeddings, it costs no memory)."""
    config_class = SkrrQwen3Config
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrQwen3Config):
        _build_pruned(self, lambda: Qwen3ForCausalLM.__init__(self, config))


class SkrrMistral3ForConditionalGeneration(Mistral3ForConditionalGeneration):
    """The language tower pruned; the vision tower and LM head a text-to-image call never runs are
    not built (the sub-block view drops them on meta, before any storage is allocated)."""
    config_class = SkrrMistral3Config
    _no_split_modules = _DECODER_BRANCHES

    def __init__(self, config: SkrrMistral3Config):
        _build_pruned(self, lambda: Mistral3ForConditionalGeneration.__init__(self, config))

    def save_pretrained(self, *args, save_original_format: bool = False, **kwargs):
        """Saved under the module names it loads by (see SkrrQwen2_5_VLForConditionalGeneration)."""
        return super().save_pretrained(*args, save_original_format=save_original_format, **kwargs)


class SkrrGemma3ForConditionalGeneration(Gemma3ForConditionalGeneration):
    """LTX-2's Gemma-3 encoder: the language tower pruned; the vision tower is not built, and the LM head
    (tied to the embeddings) computes no logits."""
    config_class = SkrrGemma3Config
    _no_split_modules = _DECODER_BRANCHES
    _tied_weights_keys = {}  # the head it was tied through computes no logits and holds no weight

    def __init__(self, config: SkrrGemma3Config):
        _build_pruned(self, lambda: Gemma3ForConditionalGeneration.__init__(self, config))

    def save_pretrained(self, *args, save_original_format: bool = False, **kwargs):
        """Saved under the module names it loads by (see SkrrQwen2_5_VLForConditionalGeneration)."""
        return super().save_pretrained(*args, save_original_format=save_original_format, **kwargs)


# dense class -> (pruned class, its config class)
PRUNED_CLASSES = {T5EncoderModel: (SkrrT5EncoderModel, SkrrT5Config),
                  UMT5EncoderModel: (SkrrUMT5EncoderModel, SkrrUMT5Config),
                  CLIPTextModel: (SkrrCLIPTextModel, SkrrCLIPTextConfig),
                  CLIPTextModelWithProjection: (SkrrCLIPTextModelWithProjection, SkrrCLIPTextConfig),
                  Gemma2Model: (SkrrGemma2Model, SkrrGemma2Config),
                  LlamaModel: (SkrrLlamaModel, SkrrLlamaConfig),
                  LlamaForCausalLM: (SkrrLlamaForCausalLM, SkrrLlamaConfig),
                  Qwen2Model: (SkrrQwen2Model, SkrrQwen2Config),
                  Qwen2_5_VLForConditionalGeneration: (SkrrQwen2_5_VLForConditionalGeneration, SkrrQwen2_5_VLConfig),
                  Qwen3Model: (SkrrQwen3Model, SkrrQwen3Config),
                  Qwen3ForCausalLM: (SkrrQwen3ForCausalLM, SkrrQwen3Config),
                  Mistral3ForConditionalGeneration: (SkrrMistral3ForConditionalGeneration, SkrrMistral3Config),
                  Gemma3ForConditionalGeneration: (SkrrGemma3ForConditionalGeneration, SkrrGemma3Config)}


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
    """Whether a registered Skrr class exists for this encoder (T5, CLIP, Gemma-2, Llama, Qwen2,
    Qwen2.5-VL); others are saved in save_pruned's own folder format (format 1)."""
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
    """AutoConfig / AutoModel learn every Skrr class (CLIP's AutoModel is the projection-less one,
    as for the dense CLIPTextConfig)."""
    seen = set()
    for cls, config_cls in PRUNED_CLASSES.values():
        if config_cls in seen:
            continue
        seen.add(config_cls)
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModel.register(config_cls, cls, exist_ok=True)


register()  # AutoConfig / AutoModel know the Skrr classes (skrr_t5, skrr_clip_text, ...) from here on
# A pruned pipeline folder names its encoder ["modeling_skrr", "Skrr..."] (the modelling file in the
# component's folder, for trust_remote_code=True); with skrr's classes loaded that name is theirs, so
# diffusers accepts the component passed in: `from_pretrained(dir, text_encoder=skrr.load_pruned(...))`.
sys.modules.setdefault("modeling_skrr", sys.modules[__name__])
