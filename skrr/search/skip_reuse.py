"""Skrr: beam-search Skip, then greedy Re-use (arXiv 2502.08690, Sec. 3).

Skip:   beams = [(0, [])]; each depth, extend every beam by every unskipped sub-block, score
        each distinct *set* once (D depends only on the set), keep the k best (ties: lower
        indices). S* = best sequence at the last depth.
Re-use: for each skipped i in S* order, try running the nearest kept same-type sub-block on
        the left or right at position i; keep the strictly best improvement.

Every decision records its relative margin: at each depth the gap between the k-th kept and the best
dropped candidate (`keep`) and between the best and the second (`lead`, which picks S* at the last
depth); at each Re-use step the gap between the chosen option and the best other one. A margin below
the evaluator's tolerance (skrr.search.compute.TOLERANCE) is a near-tie that another machine's rounding
could decide the other way; it is logged and listed, naming the depth or position.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from skrr.encoders.view import SubBlock
from skrr.plan import make_schedule, sparsity
from skrr.search.compute import ASSUMED_GPU, ASSUMED_TFLOPS

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    order: list[int]  # S*, the best sequence at the final depth
    depth_d: list[float]  # D of the best beam at each depth
    beams: list[list[tuple[list[int], float]]] = field(default_factory=list)  # per depth, k best
    evaluated: int = 0  # distinct candidate sets scored
    margins: list[dict] = field(default_factory=list)  # per depth: {"depth", "keep", "lead"} (relative)


def relative_gap(chosen: float, other: float) -> float:
    """(other - chosen) / max(|chosen|, |other|): how far the runner-up is behind, relatively (0 for a tie)."""
    scale = max(abs(chosen), abs(other))
    return 0.0 if scale == 0 else (other - chosen) / scale


def near_ties(margins: dict, tolerance: float) -> list[str]:
    """The decisions of a search (`margins` as stored in plan.info) closer than `tolerance`, in words."""
    out = [f"depth {m['depth']} ({name} margin {m[name]:.2e})" for m in margins.get("skip", [])
           for name in ("keep", "lead") if m.get(name) is not None and m[name] < tolerance
           and (name == "keep" or m["depth"] == len(margins["skip"]))]  # lead decides S* only at the last depth
    out += [f"re-use at position {m['position']} (margin {m['margin']:.2e})" for m in margins.get("reuse", [])
            if m["margin"] is not None and m["margin"] < tolerance]
    return out


def beam_search(disc, sub_blocks: list[SubBlock], total: int, beam_width: int, depth: int | None = None,
                target: float | None = None, progress: bool = True) -> SearchResult:
    """Search until `depth`, or (depth None) until the best beam reaches sparsity `target`.
    `disc` is a `Discrepancy` (or anything with its `evaluate(parent, variants, tick)`). With
    `progress`, logs a cost estimate first and shows candidates scored per depth, with an ETA.
    `beam_width` >= 1 is checked once, where the method is built (skrr.methods.Skrr)."""
    n = len(sub_blocks)
    max_depth = min(depth or n, n)
    if progress:
        planned = max_depth if depth or target is None else min(n, math.ceil(target * total / (
            sum(b.num_params for b in sub_blocks) / n)))
        log.info(cost_estimate(disc, n, beam_width, planned, estimated_depth=not depth))
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    result = SearchResult(order=[], depth_d=[])
    for d in range(max_depth):
        cands = _expand(beams, n)
        last = f", D={beams[0][1]:.4g}" if d else ""
        with tqdm(total=len(cands), desc=f"skip k={beam_width} depth {d + 1}{last}", disable=not progress,
                  leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} candidates "
                                          "[{elapsed}<{remaining}]") as bar:
            scored = _score(disc, cands, n, bar.update, rank=beam_width)
        scored.sort(key=lambda c: (c[1], sorted(c[0])))
        beams = scored[:beam_width]
        result.margins.append(_depth_margin(d + 1, scored, beam_width, disc))
        result.beams.append(beams)
        result.depth_d.append(beams[0][1])
        result.evaluated += len(cands)
        if depth is None and target is not None and sparsity(sub_blocks, beams[0][0], total) >= target:
            break
    result.order = list(beams[0][0])
    return result


def _depth_margin(depth: int, scored, beam_width: int, disc) -> dict:
    ds = [c[1] for c in scored]
    keep = relative_gap(ds[beam_width - 1], ds[beam_width]) if len(ds) > beam_width else None
    lead = relative_gap(ds[0], ds[1]) if len(ds) > 1 else None
    tol = getattr(disc, "tolerance", 0.0)
    for name, m in (("keep", keep), ("lead", lead)):
        if m is not None and m < tol:
            log.warning(f"depth {depth}: near-tie ({name} margin {m:.2e} < tolerance {tol:.0e}); "
                        "another machine's rounding could choose differently here")
    return {"depth": depth, "keep": keep, "lead": lead}


def cost_estimate(disc, n: int, beam_width: int, depth: int, estimated_depth: bool = False) -> str:
    """What the search will cost: candidates, sub-block evaluations x tokens for a full forward
    per candidate (the reference evaluator; an upper bound), the time at the throughput of a dense
    forward of the first calibration batch here, and an estimate for one GPU at the throughput
    assumed for the dtype the search computes in (skrr.search.compute.ASSUMED_TFLOPS)."""
    cands = sum(n if t == 0 else min(beam_width * (n - t), math.comb(n, t + 1)) for t in range(depth))
    evals = sum((n if t == 0 else min(beam_width * (n - t), math.comb(n, t + 1))) * (n - t - 1) for t in range(depth))
    evals += 3 * depth * n  # re-use: about three schedules per skipped position
    rate = disc.throughput()
    work = evals * disc.tokens
    name = str(disc.forward.dtype).removeprefix("torch.")
    flops = 2 * work * sum(sb.num_params for sb in disc.enc.sub_blocks) / max(n, 1)  # 2 FLOPs per weight per token
    tflops = ASSUMED_TFLOPS[name]
    return (f"search cost estimate: depth {'~' if estimated_depth else ''}{depth}, <= {cands:,} candidates; "
            f"<= {evals:,} sub-block evaluations x {disc.tokens:,} tokens = {work:.3g}; computing in {name}: "
            f"at {rate:.3g} sub-block-tokens/s measured here (dense forward of the first batch) <= "
            f"{_duration(work / rate)}; on one {ASSUMED_GPU} at an assumed {tflops:g} TFLOP/s effective {name} "
            f"(an estimate, not measured) <= {_duration(flops / (tflops * 1e12))} "
            f"(the prefix cache needs several times fewer evaluations)")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _expand(beams, n):
    """Children of every beam, one per distinct set, first parent (in rank order) wins."""
    seen, cands = set(), []
    for seq, _ in beams:
        for i in range(n):
            key = frozenset(seq) | {i}
            if i not in seq and key not in seen:
                seen.add(key)
                cands.append((seq, i))
    return cands


def _score(disc, cands, n, tick=None, rank: int = 1):
    """D of each candidate, grouped by parent (one `evaluate` call each: siblings share the parent's
    states). A certified evaluator (skrr.search.certified) scores all in bf16, then the candidates near
    the `rank`-th best again in float32; the others keep their bf16 D, which ranks them out either way."""
    if not hasattr(disc, "decide"):
        return _score_with(disc, cands, n, tick)
    rough = _score_with(disc.cheap, cands, n, tick)

    def rescore(indices):
        return [d for _, d in _score_with(disc.exact, [cands[i] for i in indices], n)]

    ds = disc.decide([d for _, d in rough], rank, rescore)
    return [(seq, d) for (seq, _), d in zip(rough, ds)]


def _score_with(disc, cands, n, tick=None):
    by_parent: dict[tuple, list[int]] = {}
    for seq, i in cands:
        by_parent.setdefault(tuple(seq), []).append(i)
    out = []
    for seq, adds in by_parent.items():
        ds = disc.evaluate(make_schedule(n, seq), [{i: None} for i in adds], tick)
        out += [(list(seq) + [i], d) for i, d in zip(adds, ds)]
    return out


def prefix_for(order: list[int], sub_blocks: list[SubBlock], total: int, target: float) -> list[int]:
    """Shortest prefix of `order` whose sparsity >= target (the whole order if none reaches it)."""
    for d in range(len(order) + 1):
        if sparsity(sub_blocks, order[:d], total) >= target:
            return order[:d]
    return list(order)


def per_target(result: SearchResult, sub_blocks: list[SubBlock], total: int, target: float) -> list[int]:
    """Best beam at the first depth whose best beam reaches the target."""
    for beams in result.beams:
        if sparsity(sub_blocks, beams[0][0], total) >= target:
            return list(beams[0][0])
    return list(result.order)


def nearest_kept(sub_blocks: list[SubBlock], skipped: set, i: int) -> tuple[int | None, int | None]:
    kind = sub_blocks[i].kind
    left = next((j for j in range(i - 1, -1, -1) if j not in skipped and sub_blocks[j].kind == kind), None)
    right = next((j for j in range(i + 1, len(sub_blocks)) if j not in skipped and sub_blocks[j].kind == kind), None)
    return left, right


def _options(disc, sched, variants) -> list[float]:
    """D of each variant; certified (skrr.search.certified): bf16 first, the best's band in float32."""
    if not hasattr(disc, "decide"):
        return disc.evaluate(sched, variants)
    rough = disc.cheap.evaluate(sched, variants)
    return disc.decide(rough, 1, lambda indices: disc.exact.evaluate(sched, [variants[i] for i in indices]))


def reuse_phase(disc, sub_blocks: list[SubBlock], skip: list[int], progress: bool = True,
                margins: list | None = None) -> tuple[dict[int, int], list[float]]:
    """Greedy Re-use over the skipped positions in skip order. Returns the re-use map and D after each
    step; appends each decision's {"position", "chosen", "margin"} to `margins` if given."""
    n, skipped, reuse = len(sub_blocks), set(skip), {}
    trace = []
    for i in tqdm(skip, desc="re-use", disable=not progress, leave=False):
        sched = make_schedule(n, skip, reuse)
        options = [s for s in nearest_kept(sub_blocks, skipped, i) if s is not None]
        ds = _options(disc, sched, [{}] + [{i: s} for s in options])
        best = min(range(1, len(ds)), key=lambda j: (ds[j], options[j - 1]), default=None)
        chosen = best if best is not None and ds[best] < ds[0] else 0
        if chosen:
            reuse[i] = options[chosen - 1]
        trace.append(ds[chosen])
        others = [d for j, d in enumerate(ds) if j != chosen]
        margin = relative_gap(ds[chosen], min(others)) if others else None
        if margin is not None and margin < getattr(disc, "tolerance", 0.0):
            log.warning(f"re-use at position {i}: near-tie (margin {margin:.2e} < tolerance {disc.tolerance:.0e})")
        if margins is not None:
            margins.append({"position": i, "chosen": reuse.get(i), "margin": margin})
    return reuse, trace
