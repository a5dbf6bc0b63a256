"""FinerCut (arXiv 2405.18218) on a text encoder: greedy sub-block removal.

Each step removes the sub-block whose removal changes the encoder output least. With no LM head
the change is D = MSE of the encoder output (options: `projection: true`, `metric: cosine`,
`null_term: true`). This is Skrr's beam search with k = 1, so it shares the prefix-reuse machinery.
"""
from __future__ import annotations

from omegaconf import DictConfig

from baselines.common import maybe_reuse
from skrr.plan import Plan
from skrr.search import beam_search, prefix_for


def run(ctx, cfg: DictConfig, targets: list[float]) -> list[Plan]:
    disc = ctx.discrepancy(cfg)
    result = beam_search(disc, ctx.sub_blocks, ctx.total, beam_width=1, target=max(targets), progress=ctx.progress)
    plans = []
    for t in targets:
        skip = prefix_for(result.order, ctx.sub_blocks, ctx.total, t)
        reuse, reuse_d = maybe_reuse(ctx, cfg, skip, disc)
        plans.append(ctx.plan(skip, cfg, reuse, target=t, order=result.order, depth_d=result.depth_d,
                              d_skip=result.depth_d[len(skip) - 1] if skip else 0.0, reuse_d=reuse_d))
    return plans
