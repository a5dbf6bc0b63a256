"""`skrr.prune`: calibration -> method -> plans, for one model and one or more sparsity targets.

Methods share one interface, `run(ctx: PruneContext, cfg, targets) -> list[Plan]`, so Skrr
and the baselines are interchangeable everywhere downstream.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from skrr import distributed
from skrr.calibration import Calibration, build_calibration, select_prompts, source_prompts
from skrr.compute import CHOICES as COMPUTE_DTYPES
from skrr.compute import DEFAULT as COMPUTE_DEFAULT
from skrr.compute import choose_compute_dtype
from skrr.discrepancy import METRICS, Discrepancy
from skrr.errors import InputError
from skrr.prefix_cache import PrefixCachedDiscrepancy
from skrr.encoder import SubBlock, to_sub_blocks, total_params
from skrr.models import TextSide, load_text_side, model_config
from skrr.plan import Plan, config_hash, sparsity
from skrr.ranges import AT_LEAST_ONE, POSITIVE, Range, check_ranges
from skrr.real_prompts import calibration_record, check_prompts_fit_model

log = logging.getLogger(__name__)
METHODS = {
    "dense": "skrr.prune:run_dense",
    "skrr": "skrr.prune:run_skrr",
    "shortgpt": "baselines.shortgpt:run",
    "laco": "baselines.laco:run",
    "finercut": "baselines.finercut:run",
    "preset": "skrr.presets:run",
}
# every numeric method setting, by key (a method without the key does not read it)
METHOD_RANGES = {
    "batch_size": AT_LEAST_ONE, "beam_width": AT_LEAST_ONE, "cache_budget_mb": POSITIVE,
    # LaCo: layers per merge, lowest and highest layer, interval after a merge, similarity threshold
    "C": Range(2, whole=True), "L": Range(0, whole=True), "H": AT_LEAST_ONE, "I": AT_LEAST_ONE, "T": Range(-1, 1),
    "num_sim_prompts": AT_LEAST_ONE,
}


@dataclass
class PruneContext:
    text_side: TextSide
    calib: Calibration
    sub_blocks: list[SubBlock]
    total: int  # dense encoder parameters (sparsity denominator)
    device: str
    progress: bool = True
    compute_dtype: torch.dtype = torch.float32  # what every forward of the method computes in

    def discrepancy(self, cfg: DictConfig, **overrides) -> Discrepancy:
        """The D evaluator with the method's settings (metric, projection, null term; it feeds the
        encoder the batches the calibration targets were computed in):
        prefix-cached (`fast: true`, the default) or the reference."""
        opts = dict(metric=cfg.get("metric", "mse"), projection=bool(cfg.get("projection", True)),
                    null_term=bool(cfg.get("null_term", True)))
        opts.update(overrides)
        if opts["projection"] != self.calib.projected:
            raise InputError(f"calibration targets were computed with projection={self.calib.projected}; "
                             f"build the context with projection={opts['projection']}")
        if cfg.get("fast", True):
            return PrefixCachedDiscrepancy(self.text_side, self.calib, device=self.device,
                                           cache_budget_mb=float(cfg.get("cache_budget_mb", 2048)), **opts)
        return Discrepancy(self.text_side, self.calib, device=self.device, **opts)

    def plan(self, skip, cfg: DictConfig, reuse=None, **info) -> Plan:
        settings = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        plan = Plan(skip=[int(i) for i in skip], reuse=dict(reuse or {}), method=settings, info=info,
                    encoder={"name": self.text_side.cfg.name, "config_hash": config_hash(self.text_side.encoder.config),
                             "num_sub_blocks": len(self.sub_blocks)})
        plan.sparsity = sparsity(self.sub_blocks, plan.skip, self.total)
        return plan


def targets_of(cfg: DictConfig, key: str = "method.sparsity") -> list[float]:
    """The sparsity targets; `key` names the setting in messages."""
    s = cfg.get("sparsity", 0.0)
    items = list(s) if isinstance(s, (list, tuple, ListConfig)) else [s]
    if not items:
        raise InputError(f"the sparsity list is empty; give at least one target, e.g. {key}=[0.3]")
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t < 1.0:  # NaN fails too
            raise InputError(f"{key} must be in [0, 1), got {t}")
    return [float(t) for t in items]


def validate_method(cfg: DictConfig) -> None:
    """Fail fast, before anything heavy is loaded."""
    if cfg.get("name") not in METHODS:
        raise InputError(f"unknown method {cfg.get('name')!r}; choose from {sorted(METHODS)}")
    targets_of(cfg)
    check_ranges(cfg, METHOD_RANGES, "method")
    if cfg.get("depth", "auto") not in (None, "auto") and not AT_LEAST_ONE.ok(cfg.depth):
        raise InputError(f"method.depth must be auto or a whole number >= 1, got {cfg.depth!r}")
    if cfg.get("metric", "mse") not in METRICS:
        raise InputError(f"unknown metric {cfg.get('metric')!r}; choose from {METRICS}")
    if cfg.get("select", "prefix") not in ("prefix", "per_target"):
        raise InputError(f"unknown select {cfg.get('select')!r}; use prefix or per_target")
    if cfg.get("compute_dtype", COMPUTE_DEFAULT) not in COMPUTE_DTYPES:
        raise InputError(f"unknown compute_dtype {cfg.get('compute_dtype')!r}; choose from {COMPUTE_DTYPES}")
    if cfg.name == "preset":
        from skrr.presets import validate_spec

        validate_spec(cfg.get("plan"))


def method_fn(name: str):
    module, _, fn = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), fn)


def make_context(model, calibration: DictConfig, device: str = "cpu", projection: bool = True,
                 batch_size: int = 8, progress: bool = True, compute_dtype: str = COMPUTE_DEFAULT) -> PruneContext:
    text_side = model if isinstance(model, TextSide) else load_text_side(model, device=device)
    enc = to_sub_blocks(text_side.encoder)
    tok = text_side.tokenizer
    prompts = select_prompts(source_prompts(calibration), calibration,
                             token_length=lambda p: len(tok(p, add_special_tokens=True).input_ids))
    model_dtype = next(enc.parameters()).dtype
    dtype, why = choose_compute_dtype(compute_dtype, model_dtype, device)
    if why:
        log.info(why)
    def calibrate(mmap=False):
        return build_calibration(text_side, prompts, projection=projection, batch_size=batch_size, device=device,
                                 compute_dtype=None if dtype == model_dtype else dtype, mmap=mmap)

    if distributed.world_size() == 1:
        calib = calibrate()
    else:  # rank 0 computes and caches the dense targets; every rank then maps the file, reading its own rows
        if distributed.rank() == 0:
            calibrate()
        distributed.barrier("rank 0's dense calibration targets")
        calib = calibrate(mmap=True)
    return PruneContext(text_side, calib, enc.sub_blocks, total_params(text_side.encoder), device,
                        progress and distributed.rank() == 0, dtype)


def prune(model, method: DictConfig | dict, calibration: DictConfig | dict, device: str = "cpu",
          progress: bool = True) -> list[Plan]:
    """Plans (one per sparsity target) for `model` (a registry name, model config or TextSide).
    Inside a process group (torchrun, srun; `skrr.distributed.init_from_env`) every rank calls
    this and searches its share of the calibration batches; all ranks return the same plans."""
    method, calibration = OmegaConf.create(method), OmegaConf.create(calibration)
    validate_method(method)
    check_prompts_fit_model(calibration, model.cfg if isinstance(model, TextSide) else model_config(model))
    ctx = make_context(model, calibration, device, projection=bool(method.get("projection", True)),
                       batch_size=int(method.get("batch_size", 8)), progress=progress,
                       compute_dtype=str(method.get("compute_dtype", COMPUTE_DEFAULT)))
    with torch.no_grad():
        plans = method_fn(method.name)(ctx, method, targets_of(method))
    record = calibration_record(calibration, ctx.calib.prompts, ctx.calib.key)
    for plan in plans:
        plan.info.setdefault("calibration", record)
        plan.info["world_size"] = distributed.world_size()
        plan.info.setdefault("compute_dtype", str(ctx.compute_dtype).removeprefix("torch."))
        # where the decisions were computed: near-ties may go the other way elsewhere (docs/exactness.md)
        plan.info.setdefault("machine", {"device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                         "torch": torch.__version__})
    return plans


# --- the two methods that live here ---------------------------------------------------
def run_dense(ctx: PruneContext, cfg: DictConfig, targets: list[float]) -> list[Plan]:
    return [ctx.plan([], cfg, target=t) for t in targets]


def run_skrr(ctx: PruneContext, cfg: DictConfig, targets: list[float]) -> list[Plan]:
    from skrr.plan import make_schedule
    from skrr.search import beam_search, near_ties, per_target, prefix_for, reuse_phase

    disc = ctx.discrepancy(cfg)
    depth = None if cfg.get("depth", "auto") in (None, "auto") else int(cfg.depth)
    result = beam_search(disc, ctx.sub_blocks, ctx.total, int(cfg.beam_width), depth=depth, target=max(targets),
                         progress=ctx.progress)
    plans = []
    for t in targets:
        if cfg.get("select", "prefix") == "per_target":
            skip = per_target(result, ctx.sub_blocks, ctx.total, t)
        else:
            skip = prefix_for(result.order, ctx.sub_blocks, ctx.total, t)
        d_skip = disc(make_schedule(len(ctx.sub_blocks), skip))
        reuse_margins: list[dict] = []
        reuse, reuse_trace = (reuse_phase(disc, ctx.sub_blocks, skip, ctx.progress, reuse_margins)
                              if cfg.get("reuse", True) else ({}, []))
        margins = {"tolerance": disc.tolerance, "skip": result.margins, "reuse": reuse_margins}
        plans.append(ctx.plan(skip, cfg, reuse, target=t, order=result.order, depth_d=result.depth_d,
                              d_skip=d_skip, d_final=reuse_trace[-1] if reuse_trace else d_skip,
                              reuse_d=reuse_trace, candidates_scored=result.evaluated,
                              sub_block_evals=distributed.sum_int(disc.sub_block_evals), margins=margins,
                              near_ties=near_ties(margins, disc.tolerance)))
    return plans
