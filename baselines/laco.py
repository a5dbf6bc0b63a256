"""LaCo (arXiv 2402.11187) on a text encoder: layer collapse with a similarity gate.

    l = H - C
    while l >= L:
        merge layers l..l+C-1 of the current model into l (RDSC: theta_l + sum_k (theta_{l+k} - theta_l))
        s = mean over prompts of cos(flat E_dense(c), flat E_merged(c))
        if s > T: accept; l = min(l - I, depth - C)    else: l = l - 1
    (stops once the largest sparsity target is met)

Layer norms are not merged (the target layer keeps its own); T5's relative position bias table
lives outside the blocks. `merge: last` is what the public reference code does in effect (its
in-place update makes the merge equal to the last layer of the run).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from skrr.baselines.common import blocks_skip, maybe_reuse
from skrr.config.ranges import AT_LEAST_ONE, Range
from skrr.encoders.view import find_sub_block_encoder
from skrr.methods import Measured
from skrr.plan import Plan, make_schedule, sparsity
from skrr.search import distributed
from skrr.search.calibration import token_batches

log = logging.getLogger(__name__)
MERGES = ("rdsc", "last")


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


@dataclass(kw_only=True)
class LaCo(Measured):
    """Collapse layers by merging runs of C blocks (RDSC), accepting a merge when the merged model's
    output stays cosine-similar (> T) to the dense one. D's settings serve only the optional Re-use."""
    merge: str  # rdsc: theta_l + sum_k (theta_{l+k} - theta_l) | last: keep the run's last layer
    C: int  # layers per merge (M)
    L: int  # lowest layer a merge may target
    H: int  # merges start at H - C (clipped to the number of blocks)
    I: int  # interval after an accepted merge
    T: float  # accept a merge when the mean cosine similarity exceeds T
    num_sim_prompts: int  # calibration prompts used for the similarity
    reuse: bool  # apply Skrr's Re-use phase afterwards (with the merged weights)

    RANGES: ClassVar[dict[str, Range]] = {**Measured.RANGES, "C": Range(2, whole=True), "L": Range(0, whole=True),
                                          "H": AT_LEAST_ONE, "I": AT_LEAST_ONE, "T": Range(-1, 1),
                                          "num_sim_prompts": AT_LEAST_ONE}
    CHOICES: ClassVar[dict[str, tuple]] = {**Measured.CHOICES, "merge": MERGES}

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        enc = find_sub_block_encoder(ctx.text_side.encoder)
        n_sub = len(enc)
        num_blocks = n_sub // 2
        C, L, I, T = int(self.C), int(self.L), int(self.I), float(self.T)
        H = min(int(self.H), num_blocks)
        n = min(int(self.num_sim_prompts), ctx.calib.tokens["input_ids"].shape[0])
        tokens = {k: None if v is None else v[:n] for k, v in ctx.calib.tokens.items()}
        batches = list(token_batches(tokens, self.batch_size))  # under torchrun/srun: shared out
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
            new = merge([_retarget(w, b, tgt) for w, b in zip(thetas, run_blocks)], self.merge)
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
                reuse, reuse_d = maybe_reuse(ctx, self, skip)
            plans.append(ctx.plan(skip, self, reuse, target=t, reached_target=reached, removed_blocks=blocks,
                                  merged_blocks=sorted(merged), merges=trace, reuse_d=reuse_d,
                                  _weights={prefix + k: v.detach().cpu().contiguous() for k, v in weights.items()}))
        return plans


def _param_prefix(model: nn.Module, enc) -> str:
    """Name of the SubBlockEncoder inside the model, as a parameter-name prefix ('encoder.')."""
    return next(name for name, m in model.named_modules() if m is enc) + "."
