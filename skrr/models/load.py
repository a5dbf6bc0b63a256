"""Loading a registered model (skrr.models): its diffusers pipeline, or only its text side (the
encoder to prune, its tokenizer and the denoiser's conditioning projection, read alone)."""
from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from skrr.config.files import CONFIGS_DIR
from skrr.encoders.readout import Readout, readout_of
from skrr.errors import ConfigError, InputError, MissingFile, UnknownName
from skrr.models import _import, build_model, check_readout, check_readout_early, get_path, model_config
from skrr.models.feeding import feeding_for
from skrr.search.compute import DTYPES


def load_pipeline(name_or_cfg, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                  plan=None, plan_dir: str | Path | None = None, **components):
    """The model's diffusers pipeline (components given as keyword arguments replace loaded ones,
    e.g. `text_encoder=load_pruned(...)`), its text encoder pruned by `plan` if one is given (a
    skrr.Plan; changed weights such as LaCo's read from `plan_dir`, by default the plan file's
    folder). `pipe.text_max_length` records the model's token length, which image generation passes
    as max_sequence_length."""
    cfg = model_config(name_or_cfg)
    model = build_model(cfg)
    check_readout_early(cfg, model.pipeline.folder(model) if cfg.text_encoder not in components else None)
    pipe = model.pipeline.load(model, dtype or DTYPES[model.dtype], **components)
    pipe.text_max_length = int(cfg.max_length)  # generation feeds the encoder as calibration does
    if cfg.text_encoder not in components:
        prepare_encoder(getattr(pipe, cfg.text_encoder), cfg)
    pipe = pipe.to(device)
    if plan is not None:
        from skrr.encoders.surgery import apply_plan

        with torch.no_grad():
            apply_plan(getattr(pipe, cfg.text_encoder), plan, weights_dir=plan_dir)
    return pipe


@dataclass
class TextSide:
    """What pruning needs from a pipeline: the encoder, its tokenizer, the projection, and how the
    pipeline feeds the encoder (`skrr.models.feeding`)."""
    cfg: DictConfig
    encoder: nn.Module
    tokenizer: object
    projection: nn.Module
    preprocess: object = None  # the pipeline's own caption cleaning, if it has one
    feeding: object = None

    def __post_init__(self):
        if self.feeding is None:
            self.feeding = feeding_for(self.cfg, self.tokenizer, self.preprocess)

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        """Tokenize exactly as the pipeline's encode_prompt does (`negative`: as it encodes the
        negative/empty prompt). `attend` marks the tokens whose embeddings reach the denoiser."""
        return self.feeding.tokenize(prompts, negative)

    def encode(self, input_ids, attention_mask) -> torch.Tensor:
        """The encoder's hidden state that the pipeline reads, for every position."""
        return self.feeding.encode(self.encoder, input_ids, attention_mask)


def prepare_encoder(encoder: nn.Module, cfg: DictConfig) -> nn.Module:
    """Decoder-only encoders read through a readout go into sub-block form at load time where that
    frees something: the layers after the deepest hidden state read, and the heads no text-to-image
    call runs (Mistral3's vision tower and LM head, HiDream's Llama LM head); others are left as loaded."""
    readout = readout_of(cfg)
    if readout == Readout():
        return encoder
    from skrr.encoders.decoder_only import has_unused_heads
    from skrr.encoders.view import to_sub_blocks

    depth = encoder_depth(encoder, cfg)
    end = max(check_readout(cfg, depth)) - depth - 1  # the deepest read, counted from the end
    if end != -1 or has_unused_heads(encoder):
        to_sub_blocks(encoder, hidden_state=end)
    return encoder


def encoder_depth(encoder: nn.Module, cfg=None) -> int:
    """Decoder layers of the encoder as loaded (its config's, which a pruned view keeps)."""
    from skrr.encoders.decoder_only import decoder_stack

    stack = decoder_stack(encoder)
    if stack is None:
        key = "readout" if cfg is not None and cfg.get("readout") else "hidden_state"
        raise ConfigError(key, f"reads an intermediate hidden state, which skrr supports for decoder-only encoders; "
                               f"got {type(encoder).__name__}")
    return int(stack.config.num_hidden_layers)


def projection_module(root: str, index: dict, paths, dtype: torch.dtype) -> nn.Module:
    """The denoiser's per-token projection of the text embeddings: one dotted path
    (`transformer.caption_projection`), or a list applied in order (Sana: caption_projection, then
    caption_norm), each read alone from the denoiser's safetensors."""
    modules = []
    for path in [paths] if isinstance(paths, str) else list(paths):
        denoiser, _, inner = path.partition(".")
        modules.append(load_projection(root, denoiser, ".".join(index[denoiser]), inner, dtype))
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def load_text_side(name_or_cfg, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> TextSide:
    """Load encoder, tokenizer and projection, never the rest of the pipeline: of the denoiser only
    the projection's tensors are read (see `load_projection`)."""
    cfg = model_config(name_or_cfg)
    model = build_model(cfg)
    dtype = dtype or DTYPES[model.dtype]
    root = model.pipeline.folder(model)
    check_readout_early(cfg, root)
    pipe_cls = model.pipeline.load_class()
    index_file = _fetch(root, "", "model_index.json")
    if index_file is None:
        raise MissingFile(f"{root} is not a diffusers pipeline: model_index.json is missing")
    index = json.loads(index_file.read_text())

    def component(sub: str):
        lib, cls_name = index[sub]
        cls = getattr(importlib.import_module(lib), cls_name)
        kwargs = {}
        if isinstance(cls, type) and issubclass(cls, nn.Module):  # tokenizers take no dtype
            kwargs = {"dtype": dtype}
        return cls.from_pretrained(root, subfolder=sub, **kwargs)

    tokenizer = component(cfg.tokenizer)
    encoder = prepare_encoder(component(cfg.text_encoder), cfg).to(device).eval()
    if cfg.family == "ltx2":  # connectors that read the mask and mix tokens, then the denoiser's projections
        projection = ltx2_conditioning(root, index, cfg.projection, dtype).to(device).eval()
    else:
        projection = projection_module(root, index, cfg.projection, dtype).to(device).eval()
    preprocess = None
    if cfg.family in ("pixart", "sana") and hasattr(pipe_cls, "_text_preprocessing"):
        helper = pipe_cls.__new__(pipe_cls)  # _text_preprocessing uses no pipeline state
        preprocess = helper._text_preprocessing
    return TextSide(cfg, encoder, tokenizer, projection, preprocess)


def ltx2_conditioning(root: str, index: dict, paths, dtype: torch.dtype) -> nn.Module:
    """LTX-2's conditioning (`LTX2Conditioning`): the pipeline's `connectors` component (read whole)
    and the denoiser's caption projections (`paths`: [connectors, transformer.caption_projection,
    transformer.audio_caption_projection]; only those tensors of the denoiser are read). Where the denoiser has no caption projection (LTX-2.3),
    `paths` names the connectors alone."""
    from skrr.models.conditioning import LTX2Conditioning

    component, *projections = list(paths)
    library, class_name = index[component]
    if library not in ("diffusers", "transformers"):  # a pipeline's own module, named as model_index.json names it
        library = f"diffusers.pipelines.{library}"
    connectors = getattr(importlib.import_module(library), class_name).from_pretrained(root, subfolder=component,
                                                                                      dtype=dtype)
    modules = []
    for path in projections:
        denoiser, _, inner = path.partition(".")
        modules.append(load_projection(root, denoiser, ".".join(index[denoiser]), inner, dtype))
    return LTX2Conditioning(connectors, *modules)


# How each denoiser class builds its conditioning projection (as in its diffusers __init__), so the
# projection is built alone instead of inside a denoiser of up to 12B parameters.
PROJECTIONS = {
    ("PixArtTransformer2DModel", "caption_projection"): lambda c: _import(
        "diffusers.models.embeddings.PixArtAlphaTextProjection")(c["caption_channels"], c["num_attention_heads"] * c["attention_head_dim"]),
    ("SD3Transformer2DModel", "context_embedder"): lambda c: nn.Linear(c["joint_attention_dim"], c["caption_projection_dim"]),
    ("FluxTransformer2DModel", "context_embedder"):
        lambda c: nn.Linear(c["joint_attention_dim"], c["num_attention_heads"] * c["attention_head_dim"]),
}
SAFETENSORS, SAFETENSORS_INDEX = "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"


def _fetch(root: str, subfolder: str, filename: str) -> Path | None:
    """A file of a local pipeline dir or a hub repo (downloading just that file); None if absent."""
    if Path(root).is_dir():
        path = Path(root) / subfolder / filename
        return path if path.is_file() else None
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(root, filename, subfolder=subfolder or None))
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: caught first)
        if constants.HF_HUB_OFFLINE:
            raise MissingFile(f"{root} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                                    f"download it once online (hf download {root}) or set model.pretrained=<a local "
                                    "folder>") from None
        raise MissingFile(f"{root}: the Hub could not be reached and the model is not in the local cache "
                                "(check the network, or set model.pretrained=<a local folder>)") from None
    except HFValidationError:
        raise MissingFile(f"{root} is neither a local folder nor a Hub model id (model.pretrained)") from None
    except EntryNotFoundError:
        return None


def load_projection(root: str, denoiser: str, denoiser_class: str, path: str, dtype: torch.dtype) -> nn.Module:
    """The denoiser's projection `path` from only the tensors under it: through the safetensors
    index, only the shard(s) holding them are opened (or downloaded), then cast to `dtype`.
    `denoiser_class` is dotted as model_index.json names it (diffusers.PixArtTransformer2DModel)."""
    from safetensors import safe_open

    config_file = _fetch(root, denoiser, "config.json")
    if config_file is None:
        raise MissingFile(f"{root}: {denoiser}/config.json is missing")
    index = _fetch(root, denoiser, SAFETENSORS_INDEX)
    prefix = path + "."
    if index is not None:
        shards = sorted({f for k, f in json.loads(index.read_text())["weight_map"].items() if k.startswith(prefix)})
    else:
        shards = [SAFETENSORS]
    tensors = {}
    for shard in shards:
        file = _fetch(root, denoiser, shard)
        if file is None:
            raise MissingFile(f"{root}: {denoiser}/{shard} is missing (the projection is read from safetensors)")
        with safe_open(str(file), framework="pt") as f:
            tensors.update({k[len(prefix):]: f.get_tensor(k).to(dtype) for k in f.keys() if k.startswith(prefix)})
    if not tensors:
        raise UnknownName(f"{root}: {denoiser} has no tensors under {path!r}; check the model's `projection`")
    cls = _import(denoiser_class)
    config = {**{k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if p.default is not p.empty},
              **json.loads(config_file.read_text())}
    with torch.device("meta"):
        build = PROJECTIONS.get((cls.__name__, path))
        # an unlisted denoiser: built on meta (no memory, no weights) just to take its projection
        module = build(config) if build else get_path(cls.from_config(config), path)
    module.load_state_dict(tensors, strict=True, assign=True)
    return module


def meta_components(cfg: DictConfig) -> dict[str, nn.Module]:
    """The real pipeline's components built on the meta device from shipped configs (no weights)."""
    if not cfg.get("meta_configs"):
        raise InputError(f"model {cfg.name!r} has no meta_configs; load it to count its parameters")
    spec = json.loads((CONFIGS_DIR / cfg.meta_configs).read_text())
    out = {}
    for name, c in spec.items():
        cls = _import(c["class"])
        conf = json.loads((CONFIGS_DIR / c["config_file"]).read_text()) if "config_file" in c else c["config"]
        with torch.device("meta"):
            if c["class"].startswith("transformers."):
                config_cls = cls.config_class
                out[name] = cls(config_cls(**conf))
            else:
                out[name] = cls(**conf)
    return out
