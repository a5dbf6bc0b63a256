"""Which plan does D define? The same Skrr search computed in float32 and in bfloat16.

For each model, beam width k and target sparsity: the plans of a float32 and a bfloat16 search
(weights as stored; bf16 computes every sub-block in bf16), their overlap and Jaccard index on the
skipped sets, whether the Re-use maps agree, the D of *each* plan under the float32 reference
evaluator (the quantity the search is meant to minimise), and the search time ratio bf16/fp32.
Downstream metrics of both plans on the toy world come from a skrr-run sweep (`--results`):

    python benchmarks/dtype_agreement.py                                   # toy world v2 + tiny twins
    skrr-run -m experiment=demo paths.root=runs/dtype method=skrr method.beam_width=1,3 \\
        method.compute_dtype=float32,bfloat16 hydra.sweep.dir=runs/dtype/sweep
    python benchmarks/dtype_agreement.py --only metrics --results runs/dtype/results/demo.jsonl
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from skrr.plan import make_schedule  # noqa: E402
from skrr.prune import make_context, prune  # noqa: E402
from skrr.search.discrepancy import Discrepancy  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = [0.24, 0.32, 0.40]
CALIBRATION = {"toyworld_v2": "toyworld"}  # the rest: builtin (the tiny twins' offline captions)


def calibration(model: str, size: int):
    cfg = OmegaConf.load(os.path.join(REPO, "conf", "calibration", f"{CALIBRATION.get(model, 'builtin')}.yaml"))
    cfg.size = size
    return cfg


def method(k: int, dtype: str):
    cfg = OmegaConf.load(os.path.join(REPO, "conf", "method", "skrr.yaml"))
    return OmegaConf.merge(cfg, {"sparsity": TARGETS, "beam_width": k, "compute_dtype": dtype})


def d_under_fp32(ctx, plan) -> float:
    """D of a plan's schedule under the float32 reference evaluator."""
    return Discrepancy(ctx.text_side, ctx.calib)(make_schedule(len(ctx.sub_blocks), plan.skip, plan.reuse))


def searches(model: str, size: int):
    ctx = make_context(model, calibration(model, size), progress=False, compute_dtype="float32")
    print(f"\n## {model}: {len(ctx.sub_blocks)} sub-blocks, {len(ctx.calib.prompts)} calibration prompts "
          f"({CALIBRATION.get(model, 'builtin')}), {torch.get_num_threads()} thread(s), "
          f"CPU {torch.backends.cpu.get_cpu_capability()}")
    print("| k | target | fp32 sparsity | bf16 sparsity | overlap | Jaccard | same re-use | D(fp32 plan) | "
          "D(bf16 plan) | bf16/fp32 time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in (1, 3):
        plans, seconds = {}, {}
        for dtype in ("float32", "bfloat16"):
            t0 = time.perf_counter()
            plans[dtype] = prune(model, method(k, dtype), calibration(model, size), progress=False)
            seconds[dtype] = time.perf_counter() - t0
        for a, b in zip(plans["float32"], plans["bfloat16"]):
            sa, sb = set(a.skip), set(b.skip)
            print(f"| {k} | {a.info['target']:.0%} | {a.sparsity:.2%} | {b.sparsity:.2%} | {len(sa & sb)}/{len(sa)} vs "
                  f"{len(sb)} | {len(sa & sb) / len(sa | sb):.3f} | {'yes' if a.reuse == b.reuse else 'no'} | "
                  f"{d_under_fp32(ctx, a):.5g} | {d_under_fp32(ctx, b):.5g} | "
                  f"{seconds['bfloat16'] / seconds['float32']:.2f}x |")


def metrics_table(results: str):
    """GenEval overall and similarity of each (k, dtype, target) row of a toy-world sweep."""
    from skrr.experiments.runner.results import load_results

    rows = [r for r in load_results(results) if r["config"]["method"]["name"] == "skrr"]
    print("\n## toy world v2: downstream metrics of the fp32 and bf16 plans (value [95% interval])")
    print("| k | compute dtype | target | sparsity | skip | GenEval overall | similarity |")
    print("|---|---|---|---|---|---|---|")
    key = lambda r: (r["config"]["method"]["beam_width"], r["plan"]["target"], r["config"]["method"]["compute_dtype"])  # noqa: E731
    for r in sorted(rows, key=key):
        m = r["metrics"]
        fmt = lambda e: f"{e['value']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"  # noqa: E731
        print(f"| {r['config']['method']['beam_width']} | {r['config']['method']['compute_dtype']} | "
              f"{r['plan']['target']:.0%} | {r['sparsity']:.2%} | {len(r['plan']['skip'])} | "
              f"{fmt(m['geneval']['overall'])} | {fmt(m['dreamsim'])} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["toyworld_v2", "tiny_pixart", "tiny_sd3", "tiny_flux"])
    ap.add_argument("--size", type=int, default=32, help="calibration prompts (the demo's 32)")
    ap.add_argument("--only", choices=["plans", "metrics"])
    ap.add_argument("--results", help="a skrr-run results file of the fp32/bf16 sweep (see above)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.size < 1 or args.threads < 1:
        ap.error("--size and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    if args.only in (None, "plans"):
        for model in args.models:
            searches(model, args.size)
    if args.only in (None, "metrics") and args.results:
        metrics_table(args.results)


if __name__ == "__main__":
    main()
