"""Would a "certified" search pay off: score every candidate in bf16, re-score in float32 only those
whose bf16 D lies within the bf16 tolerance band of the decision, and keep float32's decisions?

    .venv/bin/python benchmarks/certified.py                     # tiny T5, T5-XXL-width slice, toy world v2
    .venv/bin/python benchmarks/certified.py --models toyworld_v2 --depth 12

For each model it runs the float32 search (the default, exact one) and, on every candidate that
search scores (each depth's children, each Re-use step's options), D once more with the forward in
bfloat16 against the same float32 targets. Per decision it counts the band a certified search would
have to re-score in float32 (skrr.search.certified.certify: bf16 D within a band of the bf16 k-th kept one, Re-use:
of the best option, widened until it holds the deviations it sees), and checks that float32's choice
lies inside it.
Cost model (an estimate): a bf16 pass costs 1/8 of a float32 one on an H100 (ASSUMED_TFLOPS), so
the certified search costs (1/8 + band fraction) of the float32 one and pays off only well below 7/8.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from skrr.encoders.view import to_sub_blocks, total_params  # noqa: E402
from skrr.search.calibration import build_calibration  # noqa: E402
from skrr.search.certified import BAND, certify  # noqa: E402
from skrr.search.compute import ASSUMED_TFLOPS  # noqa: E402
from skrr.search.discrepancy import Discrepancy  # noqa: E402
from skrr.search.skip_reuse import _expand, beam_search, reuse_phase  # noqa: E402


class Recording:
    """A D evaluator that also scores every call's variants with a second (bf16) evaluator."""

    def __init__(self, exact: Discrepancy, cheap: Discrepancy):
        self.exact, self.cheap, self.calls = exact, cheap, []
        self.tolerance = exact.tolerance

    def evaluate(self, parent, variants, tick=None):
        d32 = self.exact.evaluate(parent, variants, tick)
        self.calls.append((d32, self.cheap.evaluate(parent, variants)))
        return d32

    def throughput(self):
        return self.exact.throughput()

    def __getattr__(self, name):  # tokens, forward, enc: the cost estimate's reads
        return getattr(self.exact, name)


def band(d32: list[float], d16: list[float], rank: int) -> tuple[set[int], int]:
    """(indices a certified decision re-scores, times its band widened): skrr's `certify` on these values."""
    seen = set()

    def rescore(indices):
        seen.update(indices)
        return [d32[i] for i in indices]

    _, _, widened = certify(d16, rank, rescore)
    return seen, widened


def sides(name: str, args):
    """(text side, calibration prompts) of one model."""
    if name in ("tiny", "xxl-slice"):
        import search as bench

        from skrr.models.tiny import _corpus

        p = dict(bench.PRESETS[name])
        side = bench.build_side(p["d_model"], p["d_ff"], p["num_heads"], p["d_kv"], p["layers"], p["max_length"],
                                p["caption"], "cpu")
        return side, _corpus(p["prompts"], seed=1)
    from skrr.experiments.toyworld.captions import calibration_prompts
    from skrr.models import load_text_side

    return load_text_side(name), calibration_prompts(args.prompts, 0)


def measure(name: str, args) -> dict:
    side, prompts = sides(name, args)
    enc = to_sub_blocks(side.encoder)
    n = len(enc)
    with tempfile.TemporaryDirectory() as tmp:
        calib = build_calibration(side, prompts, batch_size=8, cache_dir=tmp, compute_dtype=torch.float32)
    exact = Discrepancy(side, calib)
    cheap = Discrepancy(side, dataclasses.replace(calib, compute_dtype=torch.bfloat16))
    rec = Recording(exact, cheap)
    depth = min(args.depth or n, n)
    result = beam_search(rec, enc.sub_blocks, total_params(side.encoder), args.beam, depth=depth, progress=False)
    skip_calls = list(rec.calls)
    rec.calls.clear()
    reuse_phase(rec, enc.sub_blocks, result.order, progress=False)
    rows, scored, rescored, missed, widened = [], 0, 0, 0, 0
    deviation = max(abs(a - b) / abs(a) for d32, d16 in skip_calls + rec.calls for a, b in zip(d32, d16) if a)
    # the search scores each depth's children parent by parent; regroup the calls per depth
    per_depth, calls = [], iter(skip_calls)
    for d in range(len(result.beams)):
        # one call per parent that has children left (at the last depths some have none)
        parents = 1 if d == 0 else len({tuple(seq) for seq, _ in _expand(result.beams[d - 1], n)})
        d32, d16 = [], []
        for _ in range(parents):
            a, b = next(calls)
            d32 += a
            d16 += b
        per_depth.append((d32, d16, min(args.beam, len(d32))))
    for d, (d32, d16, k) in enumerate(per_depth, 1):
        keep, wide = band(d32, d16, k)
        widened += wide
        kept32 = set(sorted(range(len(d32)), key=lambda i: d32[i])[:k])
        missed += not kept32 <= keep
        scored, rescored = scored + len(d32), rescored + len(keep)
        rows.append((f"depth {d}", len(d32), len(keep)))
    for step, (d32, d16) in enumerate(rec.calls, 1):
        keep, wide = band(d32, d16, 1)
        widened += wide
        missed += min(range(len(d32)), key=lambda i: d32[i]) not in keep
        scored, rescored = scored + len(d32), rescored + len(keep)
        rows.append((f"re-use {step}", len(d32), len(keep)))
    return {"model": name, "sub_blocks": n, "depth": depth, "rows": rows, "scored": scored, "rescored": rescored,
            "missed": missed, "deviation": deviation,
            "widened": widened}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "xxl-slice", "toyworld_v2"])
    ap.add_argument("--depth", type=int, default=None, help="search depth (default: every sub-block)")
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=32, help="calibration prompts (toy world)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ratio = ASSUMED_TFLOPS["float32"] / ASSUMED_TFLOPS["bfloat16"]
    for name in args.models:
        r = measure(name, args)
        frac = r["rescored"] / r["scored"]
        print(f"\n## {name}: {r['sub_blocks']} sub-blocks, k={args.beam}, depth {r['depth']}")
        print("| decision | candidates | bf16 band (re-scored in float32) | fraction |")
        print("|---|---|---|---|")
        for what, total, kept in r["rows"]:
            print(f"| {what} | {total} | {kept} | {kept / total:.2f} |")
        print(f"largest relative bf16 vs float32 D difference over all candidates: {r['deviation']:.2e} (the first "
              f"band holds < {BAND / 2:g}; bands widened {r['widened']} times for what they saw)")
        print(f"re-scored {r['rescored']} of {r['scored']} candidates: {frac:.2f}; float32's choice outside the "
              f"band: {r['missed']} times; certified cost ~ {ratio + frac:.2f} x float32 (estimate: bf16 at "
              f"{ratio:g} x float32's cost)")


if __name__ == "__main__":
    main()
