"""Pruning methods as objects. `conf/method/<name>.yaml` names the class (`_target_`) and holds
every setting's default; the class's typed constructor checks them. A method searches on a
`skrr.prune.PruneContext` and returns one plan per sparsity target, so Skrr and the baselines are
interchangeable downstream:

    method = skrr.methods.load("skrr", sparsity=[0.3, 0.4], beam_width=2)   # the YAML's defaults + yours
    plans = skrr.prune("tiny_pixart", method, calibration)

Dense and Skrr live here, the saved-order `Preset` in skrr/presets.py; the baselines' classes
(ShortGPT, LaCo, FinerCut) live in their own package and plug in the same way: the core names none
of them. Building a method (its settings checked) imports no torch: the search is imported by `run`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from skrr.config.build import build, settings
from skrr.config.choices import COMPUTE_DTYPES, METRICS
from skrr.config.files import group_option
from skrr.config.ranges import AT_LEAST_ONE, POSITIVE, Range, check_ranges
from skrr.errors import ConfigError
from skrr.plan import Plan, make_schedule


def sparsity_targets(value, key: str = "sparsity") -> list[float]:
    """A target in [0, 1) or a non-empty list of them (NaN fails too), in the order given."""
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not items:
        raise ConfigError(key, "list is empty; give at least one target, e.g. [0.3]")
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t < 1.0:
            raise ConfigError(key, f"must be in [0, 1), got {t}")
    return [float(t) for t in items]


@dataclass(kw_only=True)
class Method:
    """What every method has: its `name` (what rows and reports call it) and its sparsity target(s).
    Subclasses declare their settings as fields; `RANGES` and `CHOICES` are checked on construction."""
    name: str
    sparsity: Any  # a target in [0, 1) or a list: one search serves every target

    RANGES: ClassVar[dict[str, Range]] = {}
    CHOICES: ClassVar[dict[str, tuple]] = {}
    # False: the method removes nothing (Dense), so it needs no calibration and its plan depends on none
    prunes: ClassVar[bool] = True
    # settings added after plans and stores were written -> their default: left out of both at that
    # value (`recorded`), so a plan or cache key made before the setting existed stays the same
    ADDED: ClassVar[dict[str, Any]] = {}
    # How the calibration targets are computed. Where a method has these settings they are fields
    # (Measured); a method without them (dense, a plug-in) calibrates as Skrr does by default.
    projection: ClassVar[bool] = True
    batch_size: ClassVar[int] = 8
    compute_dtype: ClassVar[str] = "float32"

    def __post_init__(self):
        sparsity_targets(self.sparsity)
        check_ranges(vars(self), self.RANGES, "")
        for key, allowed in self.CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(key, f"must be one of {', '.join(map(str, allowed))}, got {getattr(self, key)!r}")

    @property
    def targets(self) -> list[float]:
        return sparsity_targets(self.sparsity)

    def settings(self) -> dict:
        """The settings as plain data: what each plan records and what a plan's cache key hashes."""
        return self.recorded(settings(self))

    @classmethod
    def recorded(cls, values: Mapping) -> dict:
        """`values` (settings by name) as plans and cache keys record them: without ADDED ones at their default."""
        return {k: v for k, v in values.items() if not (k in cls.ADDED and v == cls.ADDED[k])}

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        raise NotImplementedError


@dataclass(kw_only=True)
class Measured(Method):
    """A method that measures Skrr's discrepancy D (its search, its Re-use phase or a plan's D)."""
    metric: str  # mse | cosine
    # `= field()`: settings without a default (the YAML holds it), not Method's class constants
    projection: bool = field()  # through the denoiser's projection (the calibration targets are computed so)
    null_term: bool  # add the empty-prompt (classifier-free guidance) term
    batch_size: int = field()
    compute_dtype: str = field()

    RANGES: ClassVar[dict[str, Range]] = {"batch_size": AT_LEAST_ONE}
    CHOICES: ClassVar[dict[str, tuple]] = {"metric": METRICS, "compute_dtype": COMPUTE_DTYPES}

    def discrepancy(self, ctx):
        return ctx.discrepancy(metric=self.metric, projection=self.projection, null_term=self.null_term)


@dataclass(kw_only=True)
class Dense(Method):
    """No pruning: the reference every method is compared with (one plan per target, all empty)."""
    prunes: ClassVar[bool] = False

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        return [ctx.plan([], self, target=t) for t in targets]


@dataclass(kw_only=True)
class Searched(Measured):
    """A method that searches with D (Skrr, FinerCut): how the search's D is computed."""
    reuse: bool  # Skrr's Re-use phase after the Skip search
    fast: bool  # prefix-cached D: identical plans, fewer sub-block evaluations
    cache_budget_mb: float  # hidden states kept per batch for prefix reuse

    RANGES: ClassVar[dict[str, Range]] = {**Measured.RANGES, "cache_budget_mb": POSITIVE}

    def discrepancy(self, ctx):
        return ctx.discrepancy(metric=self.metric, projection=self.projection, null_term=self.null_term,
                               fast=self.fast, cache_budget_mb=float(self.cache_budget_mb))


@dataclass(kw_only=True)
class Skrr(Searched):
    """Skip: beam search (width `beam_width`) for the sub-blocks whose removal changes D least, then
    Re-use: greedily let skipped positions run a neighbouring kept sub-block again."""
    beam_width: int  # k; 1 = greedy
    depth: Any  # auto (until the best beam reaches the largest target) or a whole number of sub-blocks
    select: str  # prefix: shortest prefix of S* per target | per_target

    RANGES: ClassVar[dict[str, Range]] = {**Searched.RANGES, "beam_width": AT_LEAST_ONE}
    CHOICES: ClassVar[dict[str, tuple]] = {**Searched.CHOICES, "select": ("prefix", "per_target")}

    def __post_init__(self):
        super().__post_init__()
        if self.depth not in (None, "auto") and not AT_LEAST_ONE.ok(self.depth):
            raise ConfigError("depth", f"must be auto or a whole number >= 1, got {self.depth!r}")

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        from skrr.search import distributed  # the search: torch, loaded once a run starts
        from skrr.search.skip_reuse import beam_search, near_ties, per_target, prefix_for, reuse_phase

        disc = self.discrepancy(ctx)
        depth = None if self.depth in (None, "auto") else int(self.depth)
        result = beam_search(disc, ctx.sub_blocks, ctx.total, int(self.beam_width), depth=depth, target=max(targets),
                             progress=ctx.progress)
        plans = []
        for t in targets:
            if self.select == "per_target":
                skip = per_target(result, ctx.sub_blocks, ctx.total, t)
            else:
                skip = prefix_for(result.order, ctx.sub_blocks, ctx.total, t)
            d_skip = disc(make_schedule(len(ctx.sub_blocks), skip))
            reuse_margins: list[dict] = []
            reuse, reuse_trace = (reuse_phase(disc, ctx.sub_blocks, skip, ctx.progress, reuse_margins)
                                  if self.reuse else ({}, []))
            margins = {"tolerance": disc.tolerance, "skip": result.margins, "reuse": reuse_margins}
            plans.append(ctx.plan(skip, self, reuse, target=t, order=result.order, depth_d=result.depth_d,
                                  d_skip=d_skip, d_final=reuse_trace[-1] if reuse_trace else d_skip,
                                  reuse_d=reuse_trace, candidates_scored=result.evaluated,
                                  sub_block_evals=distributed.sum_int(disc.sub_block_evals), margins=margins,
                                  near_ties=near_ties(margins, disc.tolerance)))
        return plans


def load(option: str, **overrides) -> Method:
    """The method `conf/method/<option>.yaml` describes, with `overrides` on top of its defaults."""
    cfg = OmegaConf.merge(group_option("method", option), overrides)
    return build(cfg, "method", Method)


def as_method(method) -> Method:
    """A Method as given, built from a config with `_target_`, or, for a config with only a `name`
    and some settings (a Python caller's dict), that name's YAML defaults under those settings."""
    if isinstance(method, Method):
        return method
    if not isinstance(method, (Mapping, DictConfig)):
        raise ConfigError("method", f"must be a Method or a method config, got {type(method).__name__}")
    cfg = OmegaConf.create(dict(method)) if not isinstance(method, DictConfig) else method
    if cfg.get("_target_"):
        return build(cfg, "method", Method)
    if not cfg.get("name"):
        raise ConfigError("method", "needs a _target_ (its class) or a name (conf/method/<name>.yaml)")
    return load(str(cfg.name), **OmegaConf.to_container(cfg, resolve=True))
