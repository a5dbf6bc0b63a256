"""Every plan's D on one yardstick: Skrr's default discrepancy (MSE, projection, null term) on the
sweep's calibration set, whatever method made the plan.

A Skrr plan carries the D its own search reached (`d_final`), but a baseline's plan has none, and an
ablation's (no projection, no null term) is on another scale. To ask whether D predicts image
quality across the plans of a sweep, every plan is scored the same way: one evaluator call per plan,
with a plan's changed weights (LaCo's merges) loaded for its call only. The row stores the value
(`row["discrepancy"]`); the default Skrr plan's value is its `d_final`, bit for bit.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

from omegaconf import OmegaConf

from skrr.errors import InputError

# Skrr's defaults (conf/method/skrr.yaml): what "D" means when plans of several methods are compared
SETTINGS = {"metric": "mse", "projection": True, "null_term": True, "batch_size": 8, "compute_dtype": "auto",
            "fast": True}


@contextlib.contextmanager
def changed_weights(encoder, plan, plan_dir: Path):
    """The plan's changed weights (keyed by the encoder's parameter names) in the live encoder,
    the dense ones restored after."""
    if not plan.weights:
        yield
        return
    import torch
    from safetensors.torch import load_file

    changed = load_file(str(Path(plan_dir) / plan.weights))
    params = dict(encoder.named_parameters())
    unknown = sorted(set(changed) - set(params))
    if unknown:
        raise InputError(f"{plan_dir / plan.weights} has weights the encoder does not: {unknown[:3]}")
    saved = {k: params[k].detach().clone() for k in changed}
    try:
        with torch.no_grad():
            for k, v in changed.items():
                params[k].copy_(v.to(params[k].dtype))
        yield
    finally:
        with torch.no_grad():
            for k, v in saved.items():
                params[k].copy_(v)


def plan_discrepancies(model: dict, calibration: dict, plans: list[tuple[float, Path]], device: str = "cpu",
                       ctx=None) -> dict[str, float]:
    """{target "0.2400": D} of each (target, plan file), on Skrr's default D with this calibration."""
    import torch

    from skrr.plan import Plan
    from skrr.prune import make_context

    if ctx is None:
        ctx = make_context(OmegaConf.create(model), OmegaConf.create(calibration), device, projection=True,
                           batch_size=SETTINGS["batch_size"], progress=False, compute_dtype=SETTINGS["compute_dtype"])
    out = {}
    for target, path in plans:
        plan = Plan.load(path)
        plan.validate(ctx.sub_blocks)
        with torch.no_grad(), changed_weights(ctx.text_side.encoder, plan, Path(path).parent):
            disc = ctx.discrepancy(SETTINGS["metric"], SETTINGS["projection"], SETTINGS["null_term"], SETTINGS["fast"])
            d = disc(plan.schedule(len(ctx.sub_blocks)))  # a fresh evaluator: no stale prefix cache
        if not math.isfinite(d):
            raise InputError(f"D of the plan {path} is {d}: not a result")
        out[f"{float(target):.4f}"] = float(d)
    return out
