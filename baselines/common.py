"""What the baselines share: the optional Skrr Re-use phase and per-target bookkeeping."""
from __future__ import annotations

from skrr.methods import Measured
from skrr.search.skip_reuse import reuse_phase


def maybe_reuse(ctx, method: Measured, skip: list[int], disc=None) -> tuple[dict[int, int], list[float]]:
    """Skrr's greedy Re-use after a baseline's skip set (`method.reuse=true`), else nothing."""
    if not method.reuse or not skip:
        return {}, []
    disc = disc or method.discrepancy(ctx)
    return reuse_phase(disc, ctx.sub_blocks, skip, ctx.progress)


def blocks_skip(blocks: list[int]) -> list[int]:
    """Both sub-blocks (attention 2b, FFN 2b+1) of each whole block, in order."""
    return [i for b in blocks for i in (2 * b, 2 * b + 1)]
