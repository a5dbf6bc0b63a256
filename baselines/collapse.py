"""LaCo's layer collapse (skrr.baselines.laco.LaCo): RDSC merges of C-block runs, the similarity
gate against the dense output, the restart rule after an accepted merge (docs/method.md, LaCo)."""
from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from skrr.baselines.common import blocks_skip, maybe_reuse
from skrr.encoders.view import find_sub_block_encoder
from skrr.plan import Plan, make_schedule, sparsity
from skrr.search import distributed
from skrr.search.calibration import token_batches

log = logging.getLogger("skrr.baselines.laco")  # the name its log lines have always carried


def mergeable(enc, block: int) -> dict[str, nn.Parameter]:
    """Parameters of a block that a merge changes: `branches.<i>.<name>`, norms excluded."""
    out = {}
    for i in (2 * block, 2 * block + 1):
        branch = enc.branches[str(i)]
        norms = {id(p) for m in branch.modules() if "norm" in type(m).__name__.lower() for p in m.parameters()}
        out.update({f"branches.{i}.{n}": p for n, p in branch.named_parameters() if id(p) not in norms})
    return out


def merge(thetas: list[dict[str, torch.Tensor]], how: str) -> dict[str, torch.Tensor]:
    """Merge layers [l, l+1, ...] (each a dict keyed like the first layer's) into one layer l."""
    if how == "last":
        return {k: v.clone() for k, v in thetas[-1].items()}
    base = thetas[0]  # summed in fp32, stored in the model's dtype
    return {k: (base[k].float() + sum(t[k].float() - base[k].float() for t in thetas[1:])).to(base[k].dtype)
            for k in base}


def _retarget(theta: dict[str, torch.Tensor], src: int, dst: int) -> dict[str, torch.Tensor]:
    """Rename block src's weights as block dst's (same structure, sub-blocks 2*src+j -> 2*dst+j)."""
    out = {}
    for k, v in theta.items():
        _, i, rest = k.split(".", 2)
        out[f"branches.{2 * dst + int(i) - 2 * src}.{rest}"] = v
    return out


@contextlib.contextmanager
def loaded(enc, weights: dict[str, torch.Tensor]):
    """Temporarily put `weights` (keyed `branches.<i>.<name>`) into the live encoder."""
    params = dict(enc.named_parameters())
    saved = {k: params[k].detach().clone() for k in weights}
    try:
        for k, v in weights.items():
            params[k].data.copy_(v)
        yield
    finally:
        for k, v in saved.items():
            params[k].data.copy_(v)


@torch.no_grad()
def embeddings(enc, batches: list[dict], schedule, device="cpu") -> dict[int, torch.Tensor]:
    """Flattened final embeddings (encoder output, padding zeroed), one row per prompt, fp32, of
    this rank's batches (all of them in one process): batch index -> rows."""
    out = {}
    for i in distributed.mine(len(batches)):
        b = {k: None if v is None else v.to(device) for k, v in batches[i].items()}
        h, c = enc.prepare(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        f = enc.finish(enc.run(h, c, schedule=schedule), c).float()
        f = f * b["attend"].unsqueeze(-1)
        out[i] = f.flatten(1).cpu()
    return out


def similarity(emb: dict[int, torch.Tensor], dense: dict[int, torch.Tensor], batches: list[dict]) -> float:
    """Mean over prompts of cos(flat E_dense(c), flat E_merged(c)): cosines per batch on its rank,
    gathered, then averaged in prompt order (the same number for any number of ranks)."""
    width = max(b["input_ids"].shape[0] for b in batches)
    cos = torch.zeros(len(batches), width, dtype=torch.float64)  # fp32 values, held exactly
    for i, e in emb.items():
        cos[i, :e.shape[0]] = torch.nn.functional.cosine_similarity(e, dense[i], dim=-1).double()
    cos = distributed.gather_batches(cos)
    rows = torch.cat([cos[i, :b["input_ids"].shape[0]] for i, b in enumerate(batches)])
    return float(rows.float().mean())


def collapse(method, ctx, targets: list[float]) -> list[Plan]:
    """LaCo's plans (skrr.baselines.laco.LaCo `method`'s settings): merge runs of C blocks from
    H - C down to L, each accepted while the merged output stays cosine-similar to the dense one."""
    enc = find_sub_block_encoder(ctx.text_side.encoder)
    n_sub = len(enc)
    num_blocks = n_sub // 2
    C, L, I, T = int(method.C), int(method.L), int(method.I), float(method.T)
    H = min(int(method.H), num_blocks)
    n = min(int(method.num_sim_prompts), ctx.calib.tokens["input_ids"].shape[0])
    tokens = {k: None if v is None else v[:n] for k, v in ctx.calib.tokens.items()}
    batches = list(token_batches(tokens, method.batch_size))  # under torchrun/srun: shared out
    dense = embeddings(enc, batches, list(range(n_sub)), ctx.device)

    layers = list(range(num_blocks))  # original block index of each layer of the current model
    changed: dict[int, dict[str, torch.Tensor]] = {}  # merged blocks -> their new weights (others: live)
    removed: list[int] = []
    trace, snapshots = [], {}

    def record():  # the state for every target this state reaches first
        s = sparsity(ctx.sub_blocks, blocks_skip(removed), ctx.total)
        for t in targets:
            if t not in snapshots and s >= t:
                snapshots[t] = (list(removed), {b: dict(w) for b, w in changed.items()})

    record()
    l = H - C
    while l >= L and len(snapshots) < len(targets):
        run_blocks = layers[l:l + C]
        tgt = run_blocks[0]
        thetas = [changed.get(b) or {k: p.detach() for k, p in mergeable(enc, b).items()} for b in run_blocks]
        new = merge([_retarget(w, b, tgt) for w, b in zip(thetas, run_blocks)], method.merge)
        schedule = make_schedule(n_sub, blocks_skip(removed + run_blocks[1:]))
        with loaded(enc, {**{k: v for w in changed.values() for k, v in w.items()}, **new}):
            emb = embeddings(enc, batches, schedule, ctx.device)
        sim = similarity(emb, dense, batches)
        accept = sim > T
        trace.append({"layer": l, "blocks": run_blocks, "sim": sim, "accepted": accept})
        log.info("LaCo merge blocks %s into %d: sim %.4f %s", run_blocks, tgt, sim, "accepted" if accept else "rejected")
        if accept:
            changed[tgt] = new
            for b in run_blocks[1:]:  # a removed block's earlier merge goes with it
                changed.pop(b, None)
            removed += run_blocks[1:]
            layers = [b for b in layers if b not in run_blocks[1:]]
            record()
            l = min(l - I, len(layers) - C)
        else:
            l -= 1

    prefix = _param_prefix(ctx.text_side.encoder, enc)
    plans = []
    for t in targets:
        reached = t in snapshots
        if not reached:
            log.warning("LaCo reached sparsity %.2f%%, short of the target %.2f%% (lower T or widen [L, H])",
                        100 * sparsity(ctx.sub_blocks, blocks_skip(removed), ctx.total), 100 * t)
        blocks, merged = snapshots[t] if reached else (list(removed), dict(changed))
        skip = blocks_skip(blocks)
        weights = {k: v for w in merged.values() for k, v in w.items()}
        with loaded(enc, weights):
            reuse, reuse_d = maybe_reuse(ctx, method, skip)
        plans.append(ctx.plan(skip, method, reuse, target=t, reached_target=reached, removed_blocks=blocks,
                              merged_blocks=sorted(merged), merges=trace, reuse_d=reuse_d,
                              _weights={prefix + k: v.detach().cpu().contiguous() for k, v in weights.items()}))
    return plans


def _param_prefix(model: nn.Module, enc) -> str:
    """Name of the SubBlockEncoder inside the model, as a parameter-name prefix ('encoder.')."""
    return next(name for name, m in model.named_modules() if m is enc) + "."
