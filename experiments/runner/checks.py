"""Every numeric setting of a composed config checked against its allowed range, before anything
loads: a pure function of the config, called by skrr-prune and skrr-run (and by the table-driven
test that tries an out-of-range value for every numeric key under conf/). Method and calibration
ranges live with their code (the constructors of the method and prompt-source classes), the sampler's in
eval.sampler; the rest are here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict

from skrr.config.ranges import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    OPTIONAL_COUNT,
    POSITIVE,
    WHOLE,
    Range,
    check_ranges,
)
from skrr.errors import InputError
from skrr.eval import sampler as sampling
from skrr.methods import Method, as_method, sparsity_targets
from skrr.models import Model, build_model, pixel_multiple
from skrr.prompts.sources import as_source

MODEL_RANGES = {"max_length": AT_LEAST_ONE, "hidden_state": WHOLE}  # hidden_state: a layer index, -1 = last
PROMPT_RANGES = {"coco_num": OPTIONAL_COUNT, "coco_seed": WHOLE, "geneval_images_per_prompt": AT_LEAST_ONE,
                 "geneval_generated": OPTIONAL_COUNT}
PLUGIN_PROMPT_RANGES = {"n": AT_LEAST_ONE, "seed": WHOLE}  # a `_target_` prompt source's (n, seed)
METRIC_RANGES = {"batch_size": AT_LEAST_ONE,
                 # toy FID: reference prompts, their seed, feature axes
                 "n": AT_LEAST_ONE, "seed": WHOLE, "dims": AT_LEAST_ONE,
                 # GenEval's rules
                 "threshold": FRACTION, "counting_threshold": FRACTION, "max_objects": AT_LEAST_ONE,
                 "max_overlap": FRACTION, "position_threshold": NON_NEGATIVE,
                 # efficiency: one generation at the eval's sampler settings
                 "height": AT_LEAST_ONE, "width": AT_LEAST_ONE, "num_inference_steps": AT_LEAST_ONE,
                 "guidance_scale": Range(0, none=True)}
LOGGER_RANGES = {"num_samples": Range(0, whole=True)}
TOP_RANGES = {"threads": OPTIONAL_COUNT, "distributed_timeout_s": POSITIVE}


def with_sampler(cfg: DictConfig) -> DictConfig:
    """cfg with eval.sampler resolved (model.sampler's defaults under eval.sampler's non-null keys), so
    everything downstream (the images key, efficiency's interpolated settings, the row) sees the values
    used. Both are checked first, each under its own key."""
    multiple, pipeline = pixel_multiple(cfg.model)
    model_sampler = cfg.model.get("sampler") or {}
    check_model_sampler(cfg.model)
    sampling.check(cfg.eval.sampler, multiple, pipeline, "eval.sampler")
    resolved = sampling.resolve(model_sampler, cfg.eval.sampler)
    sampling.check(resolved, multiple, pipeline, "eval.sampler")  # a default may not suit this pipeline
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.eval.sampler = resolved
    return cfg


def check_model_sampler(model: DictConfig) -> None:
    multiple, pipeline = pixel_multiple(model)
    sampling.check(model.get("sampler") or {}, multiple, pipeline, "model.sampler", allowed=sampling.MODEL_KEYS)


@dataclass(frozen=True)
class Checked:
    """A composed config's parts, each built once (its constructor checked it), passed on from here."""
    cfg: DictConfig  # eval.sampler resolved where it has one (`with_sampler`)
    model: Model
    method: Method


def check_parts(cfg: DictConfig, targets: list[float] | None = None) -> Checked:
    """Every range check of a composed skrr-run or skrr-prune config, building the model and the
    method once (with `targets` as its sparsity: skrr-run's effective list); pure (reads no file,
    loads nothing, imports no torch)."""
    model = build_model(cfg.model)  # an unknown or missing model key, named model.<key>
    if cfg.get("sparsity") is not None:  # skrr-run's sweep list, over method.sparsity
        sparsity_targets(cfg.sparsity, "sparsity")
    if targets is None:
        method_cfg = cfg.method
    else:  # built once with the effective targets; its own sparsity is still checked (a sweep's jobs fail alike)
        sparsity_targets(cfg.method.get("sparsity"), "method.sparsity")
        method_cfg = {**OmegaConf.to_container(cfg.method, resolve=True), "sparsity": list(targets)}
    method = as_method(method_cfg)  # its constructor checks every setting
    if "calibration" in cfg:  # checked for dense too: one bad number fails every job of a sweep alike
        as_source(cfg.calibration, missing_ok=True)  # its constructor checks every number (a path comes later)
    if "eval" in cfg:
        cfg = with_sampler(cfg)
    check_numbers(cfg)
    return Checked(cfg, model, method)


BUDGETS = ("full", "adaptive")


def budget_settings(cfg: DictConfig) -> tuple[str, float]:
    """eval.budget and eval.fraction, checked (no torch needed)."""
    budget = str(cfg.eval.get("budget") or "full")
    if budget not in BUDGETS:
        raise InputError(f"eval.budget must be one of {list(BUDGETS)}, got {budget!r}")
    fraction = cfg.eval.get("fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise InputError(f"eval.fraction must be a number in (0, 1] (the share of every prompt set scored), got {fraction!r}")
    from skrr.experiments.runner.adaptive import Adaptive

    Adaptive.from_config(cfg.eval.get("adaptive"))  # checked whatever the budget: a sweep may switch it on later
    return budget, float(fraction)


def check_config(cfg: DictConfig) -> DictConfig:
    """`check_parts`' config: cfg, with eval.sampler resolved where it has one."""
    return check_parts(cfg).cfg


def check_numbers(cfg: DictConfig) -> None:
    """The ranges of every group the config holds (skrr-prune's has no eval, metrics or logger);
    the method's and calibration's are checked by their constructors."""
    check_ranges(cfg, TOP_RANGES, "")
    check_ranges(cfg.model, MODEL_RANGES, "model")
    check_model_sampler(cfg.model)
    if "eval" in cfg:
        budget_settings(cfg)
        prompts = cfg.eval.get("prompts") or {}
        check_ranges(prompts, PROMPT_RANGES, "eval.prompts")
        for name, node in prompts.items():
            if isinstance(node, Mapping) and "_target_" in node:
                check_ranges(node, PLUGIN_PROMPT_RANGES, f"eval.prompts.{name}")
    for name, metric in (cfg.get("metrics") or {}).items():
        check_ranges(metric, METRIC_RANGES, f"metrics.{name}")
    if "logger" in cfg:
        check_ranges(cfg.logger, LOGGER_RANGES, "logger")
