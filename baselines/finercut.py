"""FinerCut (arXiv 2405.18218) on a text encoder: greedy sub-block removal.

Each step removes the sub-block whose removal changes the encoder output least. With no LM head
the change is D = MSE of the encoder output (options: `projection: true`, `metric: cosine`,
`null_term: true`). This is Skrr's beam search with k = 1, so it shares the prefix-reuse machinery.
"""
from __future__ import annotations

from dataclasses import dataclass

from skrr.methods import Searched
from skrr.plan import Plan


@dataclass(kw_only=True)
class FinerCut(Searched):
    """Skrr's Skip search with k = 1 on the raw output change (conf/method/finercut.yaml: no
    projection, no null term); Skrr's Re-use phase only with `reuse: true`."""

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        from skrr.baselines.common import maybe_reuse  # the search (torch): loaded when the run starts
        from skrr.search.skip_reuse import beam_search, prefix_for

        disc = self.discrepancy(ctx)
        result = beam_search(disc, ctx.sub_blocks, ctx.total, beam_width=1, target=max(targets), progress=ctx.progress)
        plans = []
        for t in targets:
            skip = prefix_for(result.order, ctx.sub_blocks, ctx.total, t)
            reuse, reuse_d = maybe_reuse(ctx, self, skip, disc)
            plans.append(ctx.plan(skip, self, reuse, target=t, order=result.order, depth_d=result.depth_d,
                                  d_skip=result.depth_d[len(skip) - 1] if skip else 0.0, reuse_d=reuse_d))
        return plans
