"""Model registry: `conf/model/<name>.yaml` -> a `Model` (built from its `_target_`, its keys
checked), whose `pipeline` adapter says how the diffusers pipeline is obtained: `HubPipeline`
(from_pretrained of a Hub id, a local folder or a `pkg:` path) or a plug-in adapter from another
package (the offline tiny twins: skrr.models.tiny.TinyPipeline). This module reads and checks the
configs without torch; loading (the pipeline, the text encoder to prune, its tokenizer and the
denoiser's conditioning projection) is skrr.models.load, whose names this package also gives."""
from __future__ import annotations

import importlib
import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from skrr.config.build import build
from skrr.config.choices import DTYPES
from skrr.config.files import CONF_DIR
from skrr.config.files import CONFIGS_DIR as CONFIGS_DIR  # where callers have read it
from skrr.config.legacy import current_name
from skrr.encoders.readout import Readout, readout_of
from skrr.errors import ConfigError, InputError, MissingFile, UnknownName

# loading, in skrr.models.load (torch, transformers, diffusers): imported on first use of one of these
LOADERS = ("TextSide", "load_pipeline", "load_text_side", "prepare_encoder", "encoder_depth", "projection_module",
           "load_projection", "meta_components", "PROJECTIONS", "SAFETENSORS", "SAFETENSORS_INDEX")


def __getattr__(name: str):
    if name not in LOADERS:
        raise AttributeError(f"module 'skrr.models' has no attribute {name!r}")
    return getattr(importlib.import_module("skrr.models.load"), name)


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

    def load(self, model: Model, dtype, **components):  # dtype: a torch.dtype
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
    readout: dict | None = None  # or several: {hidden_states: [10, 20, 30] | all, combine: stack | interleave | each} (skrr.encoders.readout)
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
                  "Flux2KleinPipeline": 16, "ZImagePipeline": 16, "ChromaPipeline": 16, "ToyWorldPipeline": 1,
                  "WanPipeline": 16, "LTX2Pipeline": 32}


def pixel_multiple(cfg) -> tuple[int, str]:
    """(multiple, pipeline class name) for a model config; a pipeline not listed gets 8 (the usual VAE factor)."""
    cls = str((cfg.get("pipeline") or {}).get("pipeline_class", "")).rpartition(".")[2]
    return PIXEL_MULTIPLE.get(cls, 8), cls


def check_device(device, setting: str = "device") -> None:
    """Fail fast on a device this machine does not have, before any weights load (the CPU is
    always there: no torch import to say so)."""
    if str(device) == "cpu":
        return
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
