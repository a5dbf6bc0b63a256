"""Model registry: `conf/model/<name>.yaml` -> a `Model` (built from its `_target_`, its keys
checked), whose `pipeline` adapter says how the diffusers pipeline is obtained: `HubPipeline`
(from_pretrained of a Hub id, a local folder or a `pkg:` path) or a plug-in adapter from another
package (the offline tiny twins: skrr.models.tiny.TinyPipeline). From it: the pipeline, the text encoder
to prune, its tokenizer and the denoiser's conditioning projection."""
from __future__ import annotations

import importlib
import importlib.resources
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from skrr.config.build import build
from skrr.config.files import CONF_DIR, CONFIGS_DIR
from skrr.config.legacy import current_name
from skrr.encoders.readout import Readout, readout_of
from skrr.errors import ConfigError, InputError, MissingFile, UnknownName
from skrr.models.feeding import feeding_for
from skrr.search.compute import DTYPES


class PipelineSource:
    """How a model's diffusers pipeline is obtained (`model.pipeline`, built from its `_target_`):
    the pipeline class, and the folder its `from_pretrained` reads. A subclass is a dataclass whose
    fields are its config keys; it needs no pipeline until `load`."""
    pipeline_class: str  # dotted, e.g. diffusers.PixArtSigmaPipeline

    @property
    def class_name(self) -> str:
        return str(self.pipeline_class).rpartition(".")[2]

    def load_class(self) -> type:
        try:
            return _import(str(self.pipeline_class))
        except (ImportError, AttributeError) as e:
            raise ConfigError("model.pipeline.pipeline_class", f"names {self.pipeline_class!r}, which cannot be "
                                                               f"imported ({type(e).__name__}: {e})") from None

    def check(self, model: Model) -> None:
        """Refuse model settings this source cannot honour (raise ConfigError naming the model key)."""

    def folder(self, model: Model) -> str:
        """The folder or Hub id `from_pretrained` reads."""
        raise NotImplementedError

    def provenance(self, model: Model) -> str:
        """Where the weights come from, in words (a pruned folder's model card says it)."""
        return str(model.pretrained)

    def load(self, model: Model, dtype: torch.dtype, **components):
        return self.load_class().from_pretrained(self.folder(model), dtype=dtype, **components)


@dataclass(frozen=True)
class HubPipeline(PipelineSource):
    """`pipeline_class.from_pretrained(model.pretrained)`: a Hub id (the local Hugging Face cache
    when offline), a local folder, or `pkg:<package>/<path>` (weights shipped inside a package)."""
    pipeline_class: str

    def check(self, model: Model) -> None:
        if not model.pretrained:
            raise ConfigError("pretrained", "must name the weights: a Hub id, a local folder or pkg:<package>/<path>")

    def folder(self, model: Model) -> str:
        return package_path(str(model.pretrained))


@dataclass(frozen=True)
class Model:
    """A text-to-image model whose text encoder is pruned: `conf/model/<name>.yaml`. Built by
    `build_model`, so an unknown key fails naming `model.<key>`. Code reads the same settings from
    the model's config (`model_config`), which records only what the YAML sets."""
    name: str
    family: str  # how the pipeline feeds its encoder (skrr.models.feeding): pixart, sd3, flux, sana, lumina2, qwen_image
    pipeline: PipelineSource
    text_encoder: str  # the pipeline component pruned
    tokenizer: str
    projection: str | list  # the denoiser's conditioning projection: a dotted path or a list applied in order
    max_length: int
    dtype: str
    pretrained: str | None = None
    attention_mask: bool = True  # the pipeline passes the mask: padding is excluded from D
    clean_caption: bool = False
    meta_configs: str | None = None  # skrr/configs/<file>: the real model's components on the meta device
    hidden_state: int = -1  # the encoder hidden state the pipeline reads
    readout: dict | None = None  # or several: {hidden_states: [10, 20, 30] | all, combine: stack | each} (skrr.encoders.readout)
    complex_human_instruction: object = None  # Sana's
    system_prompt: str | None = None  # Lumina 2's
    builtin_calibration: bool = False  # random captions may calibrate it (tiny and toy models)
    quantize: str = "none"
    quantize_backend: str = "torchao"
    sampler: dict | None = None  # the pipeline's own sampler defaults

    def __post_init__(self):
        if isinstance(self.pipeline, dict):  # its config: built here, so its keys are checked too
            object.__setattr__(self, "pipeline", build(self.pipeline, "pipeline", PipelineSource))
        if not isinstance(self.pipeline, PipelineSource):
            raise ConfigError("pipeline", "must be a pipeline adapter ({_target_: skrr.models.HubPipeline, "
                                          f"pipeline_class: ...}}), got {type(self.pipeline).__name__}")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", f"must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        readout_of(self)  # its form checked here; its indices against the encoder's depth in check_readout
        self.pipeline.check(self)


def build_model(name_or_cfg) -> Model:
    """The `Model` a model name or config describes. Builds nothing heavy: the pipeline class is
    imported only on load."""
    cfg = name_or_cfg if isinstance(name_or_cfg, (DictConfig, dict)) else model_config(name_or_cfg)
    return build(cfg, "model", Model, _recursive_=False)  # Model builds its adapter, checking its keys


def available_models() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def model_config(name_or_cfg) -> DictConfig:
    """The composed `conf/model/<name>.yaml` (Hydra defaults resolved), or a given config; checked
    by building its `Model` (an unknown or missing key fails here, named `model.<key>`)."""
    if isinstance(name_or_cfg, (DictConfig, dict)):
        cfg = OmegaConf.create(name_or_cfg)
    elif name_or_cfg not in available_models():
        raise UnknownName(f"unknown model {name_or_cfg!r}; choose from {available_models()}")
    else:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name="model_only", overrides=[f"model={name_or_cfg}"]).model
    build_model(cfg)
    return cfg


# The multiple of which each pipeline class needs height and width (its check_inputs: the VAE's
# downsampling, times the denoiser's patch size where it checks that too), known without loading it.
# Tiny twins take their real model's (stricter than their tiny VAEs need: a tiny run fails where the real one would).
PIXEL_MULTIPLE = {"PixArtSigmaPipeline": 8, "StableDiffusion3Pipeline": 16, "FluxPipeline": 16, "SanaPipeline": 32,
                  "Lumina2Pipeline": 16, "QwenImagePipeline": 16, "Flux2Pipeline": 16,
                  "Flux2KleinPipeline": 16, "ZImagePipeline": 16, "ChromaPipeline": 16, "ToyWorldPipeline": 1}


def pixel_multiple(cfg) -> tuple[int, str]:
    """(multiple, pipeline class name) for a model config; a pipeline not listed gets 8 (the usual VAE factor)."""
    cls = str((cfg.get("pipeline") or {}).get("pipeline_class", "")).rpartition(".")[2]
    return PIXEL_MULTIPLE.get(cls, 8), cls


def check_device(device, setting: str = "device") -> None:
    """Fail fast on a device this machine does not have, before any weights load."""
    import torch

    try:
        dev = torch.device(str(device))
    except RuntimeError:
        raise InputError(f"{setting}={device} is not a device (use cpu, cuda or cuda:<index>)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{setting}={device} but this machine has no usable CUDA GPU; set {setting}=cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"{setting}={device} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{setting}={device} but MPS is not available here; set {setting}=cpu")


def resolve_pretrained(name_or_cfg) -> str:
    """The folder or Hub id the model's pipeline is read from (a tiny twin: built on first use)."""
    model = build_model(name_or_cfg)
    return model.pipeline.folder(model)


def read_from(name_or_cfg, folder: str | Path) -> DictConfig:
    """The model's config with its pipeline read from `folder` by `from_pretrained` (a saved copy
    of a tiny twin, a real model's local folder): same settings, adapter HubPipeline."""
    cfg = model_config(name_or_cfg).copy()
    cfg.pipeline = {"_target_": f"{HubPipeline.__module__}.{HubPipeline.__name__}",
                    "pipeline_class": cfg.pipeline.pipeline_class}
    cfg.pretrained = str(folder)
    return cfg


def package_path(path: str) -> str:
    """`pkg:<package>/<relative path>` -> that path inside the installed package (weights shipped
    with a package); any other string (hub id, local path) is returned unchanged."""
    if not path.startswith("pkg:"):
        return path
    path = current_name(path)
    package, _, relative = path[len("pkg:"):].partition("/")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise MissingFile(f"model.pretrained={path}: no installed package {package!r}; install it or fix the path") from None
    return str(Path(str(root)) / relative)


def _import(dotted: str):
    module, _, attr = current_name(dotted).rpartition(".")
    return getattr(importlib.import_module(module), attr)


def get_path(root, dotted: str):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


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
    """Decoder-only encoders whose pipeline reads no deeper than an earlier hidden state go into
    sub-block form at load time, which frees the layers after the deepest one read (and, for
    Mistral3, the vision tower and LM head); others are left as loaded."""
    readout = readout_of(cfg)
    if readout == Readout():
        return encoder
    from skrr.encoders.view import to_sub_blocks

    depth = encoder_depth(encoder, cfg)
    end = max(check_readout(cfg, depth)) - depth - 1  # the deepest read, counted from the end
    if end != -1:
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


def check_readout(cfg: DictConfig, num_layers: int) -> tuple[int, ...]:
    """The model's read indices against an encoder of `num_layers` layers: one that does not exist
    fails in one line naming the key."""
    key = "model.readout.hidden_states" if cfg.get("readout") else "model.hidden_state"
    return readout_of(cfg).resolve(num_layers, key)


def text_encoder_depth(cfg: DictConfig, root: str | None = None) -> int | None:
    """The encoder's layer count read from a config file alone (the local pipeline folder's
    `<text_encoder>/config.json`, else the shipped meta config); None where neither is at hand."""
    spec = None
    if root is not None and Path(root).is_dir() and (Path(root) / cfg.text_encoder / "config.json").is_file():
        spec = json.loads((Path(root) / cfg.text_encoder / "config.json").read_text())
    elif cfg.get("meta_configs"):
        components = json.loads((CONFIGS_DIR / cfg.meta_configs).read_text())
        c = components.get(cfg.text_encoder, {})
        spec = json.loads((CONFIGS_DIR / c["config_file"]).read_text()) if "config_file" in c else c.get("config")
    if not spec:
        return None
    spec = spec.get("text_config", spec)
    n = spec.get("num_hidden_layers", spec.get("num_layers"))
    return None if n is None else int(n)


def check_readout_early(cfg: DictConfig, root: str | None = None) -> None:
    """Fail before any weights load when the model reads a hidden state its encoder does not have."""
    if readout_of(cfg) == Readout():
        return
    n = text_encoder_depth(cfg, root)
    if n is not None:
        check_readout(cfg, n)


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
    projection = projection_module(root, index, cfg.projection, dtype).to(device).eval()
    preprocess = None
    if cfg.family in ("pixart", "sana") and hasattr(pipe_cls, "_text_preprocessing"):
        helper = pipe_cls.__new__(pipe_cls)  # _text_preprocessing uses no pipeline state
        preprocess = helper._text_preprocessing
    return TextSide(cfg, encoder, tokenizer, projection, preprocess)


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

