"""The paper's published plans as presets: `paper:<model>/<method>[@<target>]`.

A preset is a published skip *order*; `@0.40` takes its shortest prefix whose sparsity reaches
0.40 (for block methods, a prefix of whole blocks). Without a target it is the whole order.
`load_plan` accepts a preset wherever it accepts a plan file, and `method=preset` (`Preset`) turns
one (or any plan file with an `order`) into a plan per sparsity target.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from skrr.config.files import CONFIGS_DIR
from skrr.errors import ConfigError
from skrr.methods import Measured
from skrr.plan import Plan, PlanError, config_hash, make_schedule, sparsity

SCHEME = "paper:"

# Skip orders as published in the Skrr paper (ICML 2025, appendix) for PixArt-Sigma's T5-XXL.
PAPER = {
    "pixart_sigma": {
        "encoder_config": "t5_v1_1_xxl.json",
        "skrr": {"unit": "sub_block", "order": [46, 5, 6, 47, 44, 2, 11, 24, 23, 17, 18, 45, 10, 30, 29, 40, 39, 38,
                                                37, 42, 25, 22, 43, 36]},
        # ShortGPT removes whole blocks b = sub-blocks 2b and 2b+1; the paper lists the first ten.
        "shortgpt": {"unit": "block", "order": [10, 11, 8, 9, 12, 13, 5, 14, 6, 4]},
    },
}


def is_preset(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(SCHEME)


def parse(spec: str) -> tuple[str, str, float | None]:
    """`paper:pixart_sigma/skrr@0.40` -> ("pixart_sigma", "skrr", 0.4). Raises PlanError."""
    body, _, target = spec[len(SCHEME):].partition("@")
    model, _, method = body.partition("/")
    if model not in PAPER:
        raise PlanError(f"unknown preset model {model!r} in {spec!r}; choose from {sorted(PAPER)}")
    methods = sorted(k for k in PAPER[model] if k != "encoder_config")
    if method not in methods:
        raise PlanError(f"unknown preset method {method!r} in {spec!r}; choose from {methods}")
    if not target:
        return model, method, None
    try:
        t = float(target)
    except ValueError:
        raise PlanError(f"preset target must be a number in [0, 1), got {target!r} in {spec!r}") from None
    if not 0.0 <= t < 1.0:
        raise PlanError(f"preset target must be in [0, 1), got {t} in {spec!r}")
    return model, method, t


@cache
def _encoder_layout(config_file: str):
    """Sub-blocks, dense parameter count and config hash of the encoder, built on meta (no weights)."""
    import torch
    from transformers import T5Config, T5EncoderModel

    from skrr.encoders.view import to_sub_blocks, total_params

    config = T5Config(**json.loads((CONFIGS_DIR / config_file).read_text()))
    with torch.device("meta"):
        model = T5EncoderModel(config)
    return to_sub_blocks(model).sub_blocks, total_params(model), config_hash(model.config)


def steps_of(order: list[int], unit: str) -> list[list[int]]:
    """What one step of a published order skips: a sub-block, or a whole block (2b, 2b+1)."""
    return [[i] for i in order] if unit == "sub_block" else [[2 * b, 2 * b + 1] for b in order]


def prefix_plan(steps: list[list[int]], target: float | None, sub_blocks, total: int) -> list[int]:
    """Skipped sub-blocks of the shortest prefix of `steps` reaching `target` (all of them for None)."""
    skip: list[int] = []
    for step in steps:
        if target is not None and sparsity(sub_blocks, skip, total) >= target:
            return skip
        skip = skip + step
    if target is not None and sparsity(sub_blocks, skip, total) < target:
        raise PlanError(f"the published order reaches only {sparsity(sub_blocks, skip, total):.2%} "
                        f"sparsity, less than the target {target:.2%}")
    return skip


def load_preset(spec: str) -> Plan:
    """The plan a preset names, with its sparsity on the paper's encoder."""
    model, method, target = parse(spec)
    entry = PAPER[model]
    sub_blocks, total, h = _encoder_layout(entry["encoder_config"])
    steps = steps_of(entry[method]["order"], entry[method]["unit"])
    skip = prefix_plan(steps, target, sub_blocks, total)
    plan = Plan(skip=skip, encoder={"name": model, "config_hash": h, "num_sub_blocks": len(sub_blocks)},
                method={"name": method, "preset": spec},
                info={"preset": spec, "order": [i for step in steps for i in step], "step": len(steps[0]),
                      **({"target": target} if target is not None else {})})
    plan.sparsity = sparsity(sub_blocks, skip, total)
    return plan


def load_plan(spec) -> Plan:
    """A preset (`paper:pixart_sigma/skrr@0.40`) or a plan file / folder (`Plan.load`)."""
    return load_preset(str(spec)) if is_preset(spec) else Plan.load(spec)


@dataclass(kw_only=True)
class Preset(Measured):
    """`method=preset method.plan=paper:pixart_sigma/skrr`: the shortest prefix of a published
    order (or of a plan file's `info.order`) per target, checked against the loaded encoder, with
    the D of each plan on the calibration set (no search)."""
    plan: str  # paper:<model>/<method> or a plan file with info.order

    def __post_init__(self):
        super().__post_init__()
        if is_preset(self.plan):
            try:
                parse(self.plan)
            except PlanError as e:
                raise ConfigError("plan", str(e)) from None
        elif not self.plan:
            raise ConfigError("plan", "must name paper:<model>/<method> or a plan file with an order")
        elif not Plan.load(self.plan).info.get("order"):  # read now (a small JSON): a bad file fails before any model loads
            raise ConfigError("plan", f"{self.plan} has no skip order (info.order); a preset needs one")

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        base = load_plan(self.plan)
        order = base.info.get("order")
        if not order:
            raise PlanError(f"{self.plan} has no skip order (info.order); a preset needs one")
        h = config_hash(ctx.text_side.encoder.config)
        if base.encoder and base.encoder.get("config_hash") not in (None, h):
            raise PlanError(f"{self.plan} is for encoder {base.encoder.get('name')!r}, not {ctx.text_side.cfg.name!r}")
        n = int(base.info.get("step", 1))  # 2 for block methods: a block's two sub-blocks go together
        steps = [list(order[i:i + n]) for i in range(0, len(order), n)]
        disc = self.discrepancy(ctx)
        plans = []
        for t in targets:
            skip = prefix_plan(steps, t, ctx.sub_blocks, ctx.total)
            plan = ctx.plan(skip, self, target=t, order=list(order), step=n, source=str(self.plan))
            plan.validate(ctx.sub_blocks, ctx.text_side.encoder.config)
            plan.info["d_final"] = disc(make_schedule(len(ctx.sub_blocks), skip))
            plans.append(plan)
        return plans
