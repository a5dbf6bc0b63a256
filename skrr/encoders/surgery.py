"""Materialise a plan: skipped sub-blocks become the identity and their weights are freed;
re-used positions call the kept sub-block's module again (the same object, no copy)."""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from skrr.encoders.view import SubBlockEncoder, to_sub_blocks, total_params
from skrr.errors import MissingFile
from skrr.plan import Plan, PlanError, make_schedule, sparsity


def apply_plan(model: nn.Module, plan: Plan, name: str | None = None, weights_dir: str | Path | None = None,
               changed_weights: bool = True) -> nn.Module:
    """Prune `model` in place by `plan` (validated first) and return it.

    `weights_dir` is where `plan.weights` (changed weights, e.g. LaCo's merged layers) lives;
    by default the directory of the plan file. `changed_weights=False` leaves them out (the
    pruned-encoder loader, whose saved weights already contain them).
    """
    enc = to_sub_blocks(model)
    plan.validate(enc.sub_blocks, model.config, name)
    dense_total = total_params(model)
    if set(int(k) for k in enc.branches) != set(range(len(enc))):
        raise PlanError("this encoder is already pruned; apply a plan to a dense encoder")
    cut(enc, plan.skip, plan.reuse)
    if plan.weights and changed_weights:
        _load_changed_weights(model, plan, weights_dir)
    plan.sparsity = sparsity(enc.sub_blocks, plan.skip, dense_total)
    return model


def cut(enc: SubBlockEncoder, skip, reuse) -> None:
    """Set the schedule and free the skipped branches (a checked plan's skip and re-use). Also what
    a saved pruned encoder's class runs when it is built, so it ships in the hub modelling file."""
    enc.schedule = make_schedule(len(enc), skip, reuse)
    for i in skip:
        del enc.branches[str(i)]


def _load_changed_weights(model: nn.Module, plan: Plan, weights_dir) -> None:
    base = Path(weights_dir) if weights_dir else Path(plan.info.get("path", ".")).parent
    path = base / plan.weights
    if not path.is_file():
        raise MissingFile(f"plan needs changed weights {path}, which do not exist")
    changed = load_file(str(path))
    own = dict(model.named_parameters())
    unknown = sorted(set(changed) - set(own))
    if unknown:
        raise PlanError(f"{path} has weights this pruned encoder does not: {unknown[:3]}")
    for key, value in changed.items():
        own[key].data.copy_(value.to(own[key].dtype))
