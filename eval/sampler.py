"""The sampler settings a run generates with. A model may name its own defaults (`model.sampler`:
Sana, Lumina 2 and Qwen-Image were trained at 1024x1024 with their own steps and guidance);
`eval.sampler` overrides them key by key, and a key it leaves null takes the model's value, else
SamplerConfig's (guidance_scale null: the pipeline's own default). Every value is range-checked
before anything loads (this module imports no torch)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from skrr.config.ranges import AT_LEAST_ONE, WHOLE, Range
from skrr.errors import InputError


@dataclass
class SamplerConfig:
    """How skrr.eval.generate samples each image."""
    height: int = 512
    width: int = 512
    num_inference_steps: int = 20
    guidance_scale: float | None = None  # None: the pipeline's own default (the paper's protocol)
    base_seed: int = 0
    batch_size: int = 4


MODEL_KEYS = ("height", "width", "num_inference_steps", "guidance_scale")  # what a model's defaults may set
RANGES = {"num_inference_steps": AT_LEAST_ONE, "guidance_scale": Range(0, none=True), "base_seed": WHOLE,
          "batch_size": AT_LEAST_ONE}


def size_range(multiple: int, pipeline: str) -> Range:
    return Range(1, whole=True, multiple=multiple, why=f"{pipeline} needs it" if pipeline else "")


def check(sampler, multiple: int = 1, pipeline: str = "", prefix: str = "eval.sampler", allowed=None) -> None:
    """ValueError naming `<prefix>.<key>` for an unknown key or a value out of range (null: unset)."""
    allowed = allowed or [f.name for f in fields(SamplerConfig)]
    for key in sampler:
        if key not in allowed:
            raise InputError(f"{prefix}.{key} is not a sampler setting; use {', '.join(allowed)}")
    ranges = {**RANGES, "height": size_range(multiple, pipeline), "width": size_range(multiple, pipeline)}
    for key, value in sampler.items():
        if value is not None:
            ranges[key].check(value, f"{prefix}.{key}")


def resolve(model_sampler, eval_sampler) -> dict:
    """SamplerConfig's defaults, then the model's, then eval.sampler's keys that are not null."""
    out = asdict(SamplerConfig())
    out.update({k: v for k, v in dict(model_sampler or {}).items()})
    out.update({k: v for k, v in dict(eval_sampler or {}).items() if v is not None})
    return out
