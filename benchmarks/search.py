"""Straightforward vs fast Skrr search, on the same model and data in one process.

For each model: beam search + re-use with `fast=False` (a full forward per candidate) and with
`fast=True` (prefix-state cache + candidates stacked along the batch); prints the ratios
(straightforward / fast) of sub-block forward evaluations, wall time and peak memory, and
asserts the exactness contract (docs/exactness.md): identical plans, every D value within the compute
dtype's relative tolerance (skrr.compute.TOLERANCE), and prints the smallest decision margins.
`--save F` writes the fast search's plans and D values; `--against F` checks another run's (another
CPU, `ATEN_CPU_CAPABILITY=avx2 ...`, a GPU) against this one by the same contract.
Finally an *estimate* of the paper-scale search time (T5-XXL, 48 sub-blocks, 1000 prompts x
300 tokens, k=3, depth 24) from per-sub-block costs.

    python benchmarks/search.py                       # tiny T5 (24 sub-blocks) + T5-XXL-width slice
    python benchmarks/search.py --models tiny --depth 12 --beam 3
    python benchmarks/search.py --only fast --dtype bfloat16           # the contract for a bf16 search
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers.models.embeddings import PixArtAlphaTextProjection  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import T5Config, T5EncoderModel  # noqa: E402

from skrr.calibration import build_calibration  # noqa: E402
from skrr.compute import DTYPES, TOLERANCE  # noqa: E402
from skrr.discrepancy import Discrepancy  # noqa: E402
from skrr.prefix_cache import PrefixCachedDiscrepancy  # noqa: E402
from skrr.encoder import to_sub_blocks, total_params  # noqa: E402
from skrr.models import TextSide  # noqa: E402
from skrr.search import beam_search, near_ties, reuse_phase  # noqa: E402
from skrr.tiny import _corpus, t5_tokenizer  # noqa: E402

# T5-XXL's width (t5-v1_1-xxl): what one sub-block costs on the real model
XXL = dict(d_model=4096, d_ff=10240, num_heads=64, d_kv=64)
PRESETS = {
    "tiny": dict(d_model=32, d_ff=48, num_heads=4, d_kv=8, layers=12, prompts=32, max_length=32, depth=12, caption=24),
    "xxl-slice": dict(**XXL, layers=4, prompts=4, max_length=16, depth=4, caption=1152),
}


def build_side(d_model, d_ff, num_heads, d_kv, layers, max_length, caption, device, seed=0, dtype=torch.float32):
    """A T5 encoder with random weights and a PixArt-style caption projection, as a TextSide."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        config = T5Config(vocab_size=300, d_model=d_model, d_ff=d_ff, num_heads=num_heads, d_kv=d_kv, num_layers=layers,
                          feed_forward_proj="gated-gelu", dropout_rate=0.0, relative_attention_num_buckets=32,
                          relative_attention_max_distance=128, pad_token_id=0, eos_token_id=1)
        encoder = T5EncoderModel(config).eval().to(device, dtype)
        projection = PixArtAlphaTextProjection(d_model, caption).eval().to(device, dtype)
    cfg = OmegaConf.create({"name": f"bench-t5-{d_model}-{layers}", "max_length": max_length, "attention_mask": True,
                            "clean_caption": False})
    return TextSide(cfg, encoder, t5_tokenizer(max_length), projection)


class PeakMemory:
    """Peak memory above the starting point: CUDA allocator stats, or sampled process RSS on CPU
    (tensors do not go through Python's allocator, so tracemalloc would not see them)."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.peak = _rss()
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.base
        else:
            self.stop.set()
            self.thread.join()
            self.bytes = max(self.peak, _rss()) - self.base


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def search(side, calib, sub_blocks, total, args, fast):
    evaluator = PrefixCachedDiscrepancy if fast else Discrepancy
    disc = evaluator(side, calib, device=args.device)
    with PeakMemory(args.device) as mem:
        t0 = time.perf_counter()
        result = beam_search(disc, sub_blocks, total, args.beam, depth=args.depth, progress=False)
        reuse_margins = []
        reuse, trace = reuse_phase(disc, sub_blocks, result.order, progress=False, margins=reuse_margins)
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    plan = (result.order, result.depth_d, result.beams, reuse, trace)
    margins = {"skip": result.margins, "reuse": reuse_margins}
    return dict(plan=plan, evals=disc.sub_block_evals, seconds=seconds, memory=mem.bytes, margins=margins,
                tolerance=disc.tolerance)


def decisions(plan) -> tuple:
    """What a search decided: S*, the beams' sets per depth, the re-use map."""
    order, _, beams, reuse, _ = plan
    return order, [[sorted(seq) for seq, _ in depth] for depth in beams], {int(k): v for k, v in reuse.items()}


def values(plan) -> list[float]:
    """Every D a search reported: best per depth, each beam's, each re-use step's."""
    _, depth_d, beams, _, trace = plan
    return [*depth_d, *(d for depth in beams for _, d in depth), *trace]


def check_contract(a, b, tolerance, what) -> float:
    """Identical decisions and every D within `tolerance` (relative); returns the largest relative gap."""
    assert decisions(a) == decisions(b), f"{what}: the plans differ"
    gaps = [abs(x - y) / max(abs(x), abs(y)) for x, y in zip(values(a), values(b)) if x != y]
    worst = max(gaps, default=0.0)
    assert len(values(a)) == len(values(b)) and worst <= tolerance, \
        f"{what}: D differs by {worst:.2e} relative, above the tolerance {tolerance:.0e}"
    return worst


def margin_report(margins, tolerance) -> str:
    keep = [m["keep"] for m in margins["skip"] if m["keep"] is not None]
    reuse = [m["margin"] for m in margins["reuse"] if m["margin"] is not None]
    ties = near_ties(margins, tolerance)
    return (f"smallest decision margins: skip {min(keep, default=float('nan')):.2e} (k-th kept vs best dropped), "
            f"re-use {min(reuse, default=float('nan')):.2e}; tolerance {tolerance:.0e}; "
            f"near-ties: {', '.join(ties) if ties else 'none'}")


def sub_block_cost(side, rows, length, device, repeats=3) -> tuple[float, float]:
    """Seconds per sub-block forward per prompt (attention, FFN), measured on block 0."""
    enc = to_sub_blocks(side.encoder)
    ids = torch.randint(3, 290, (rows, length), device=device)
    h, ctx = enc.prepare(input_ids=ids, attention_mask=torch.ones_like(ids))
    out = []
    for i in (0, 1):
        enc.branches[str(i)](h, ctx)  # warm-up
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            enc.branches[str(i)](h, ctx)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / repeats / rows)
    return out[0], out[1]


def ratio(a, b) -> str:
    return f"{a / b:.3g}x" if b else "inf"


@torch.no_grad()
def bench_model(name, args):
    p = dict(PRESETS[name])
    for key in ("layers", "prompts", "max_length", "depth"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    args.depth = p["depth"]
    side = build_side(p["d_model"], p["d_ff"], p["num_heads"], p["d_kv"], p["layers"], p["max_length"], p["caption"],
                      args.device, dtype=DTYPES[args.dtype])
    enc = to_sub_blocks(side.encoder)
    prompts = _corpus(p["prompts"], seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        calib = build_calibration(side, prompts, batch_size=args.batch_size, device=args.device, cache_dir=tmp)
    subs, total = enc.sub_blocks, total_params(side.encoder)
    print(f"\n## {name}: d_model={p['d_model']} d_ff={p['d_ff']} heads={p['num_heads']} sub-blocks={len(enc)} "
          f"prompts={p['prompts']}x{p['max_length']} tokens, k={args.beam}, depth={p['depth']}, device={args.device}, "
          f"compute dtype {args.dtype}")
    slow = search(side, calib, subs, total, args, fast=False)
    fast = search(side, calib, subs, total, args, fast=True)
    worst = check_contract(slow["plan"], fast["plan"], fast["tolerance"], f"{name}: fast vs straightforward")
    print(f"| {'':26} | {'straightforward':>15} | {'fast':>12} | {'ratio':>7} |")
    print(f"|{'-' * 28}|{'-' * 17}|{'-' * 14}|{'-' * 9}|")
    print(f"| {'sub-block evals (x prompt)':26} | {slow['evals']:>15,} | {fast['evals']:>12,} | "
          f"{ratio(slow['evals'], fast['evals']):>7} |")
    print(f"| {'wall time (s)':26} | {slow['seconds']:>15.2f} | {fast['seconds']:>12.2f} | "
          f"{ratio(slow['seconds'], fast['seconds']):>7} |")
    print(f"| {'peak memory (MiB)':26} | {slow['memory'] / 2**20:>15.1f} | {fast['memory'] / 2**20:>12.1f} | "
          f"{ratio(slow['memory'], fast['memory']):>7} |")
    print(f"plans identical: yes (skip order {fast['plan'][0]}, re-use {fast['plan'][3]}); largest relative D "
          f"difference {worst:.2e} (tolerance {fast['tolerance']:.0e}, {args.dtype})")
    print(margin_report(fast["margins"], fast["tolerance"]))
    return side, slow, fast


def paper_length_prompts(tokenizer, count, seed=0, lo=150, hi=250):
    """Captions of lo..hi tokens (the paper kept such COCO captions), from the offline corpus."""
    words = " ".join(_corpus(400, seed)).split()
    g = torch.Generator().manual_seed(seed)
    prompts, start = [], 0
    for _ in range(count):
        want, n = int(torch.randint(lo, hi + 1, (1,), generator=g)), 1
        while len(tokenizer(" ".join(words[start:start + n])).input_ids) < want:
            n += 1
        prompts.append(" ".join(words[start:start + n]))
        start = (start + n) % (len(words) // 2)
    return prompts


@torch.no_grad()
def bench_buckets(args):
    """Length buckets on a paper-like mix: prompts of 150-250 tokens padded to 300, plus the null prompt."""
    side = build_side(d_model=128, d_ff=256, num_heads=4, d_kv=32, layers=4, max_length=300, caption=96,
                      device=args.device)
    enc = to_sub_blocks(side.encoder)
    prompts = paper_length_prompts(side.tokenizer, args.bucket_prompts)
    lengths = [len(side.tokenizer(p).input_ids) for p in prompts]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cut in (False, True):
            calib = build_calibration(side, prompts, batch_size=args.batch_size, device=args.device,
                                      cache_dir=f"{tmp}/{cut}", length_buckets=cut)
            runs[cut] = search(side, calib, enc.sub_blocks, total_params(side.encoder), args, fast=True)
            runs[cut]["tokens"] = PrefixCachedDiscrepancy(side, calib).tokens
    full, cut = runs[False], runs[True]
    same = full["plan"][0] == cut["plan"][0] and full["plan"][3] == cut["plan"][3]
    rel = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(full["plan"][1], cut["plan"][1]))
    print(f"\n## length buckets: {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens padded to 300 + the "
          f"null prompt, T5 d_model=128, {len(enc)} sub-blocks, k={args.beam}, depth={args.depth}, fast search")
    print(f"| {'':24} | {'every position':>14} | {'length buckets':>14} | {'ratio':>7} |")
    print(f"|{'-' * 26}|{'-' * 16}|{'-' * 16}|{'-' * 9}|")
    print(f"| {'tokens per pass':24} | {full['tokens']:>14,} | {cut['tokens']:>14,} | "
          f"{ratio(full['tokens'], cut['tokens']):>7} |")
    print(f"| {'wall time (s)':24} | {full['seconds']:>14.2f} | {cut['seconds']:>14.2f} | "
          f"{ratio(full['seconds'], cut['seconds']):>7} |")
    print(f"plans identical: {'yes' if same else 'NO'}; largest relative D difference per depth: {rel:.2g}")
    assert same, "length buckets changed the plan"


@torch.no_grad()
def bench_compute_dtype(args, rows=512, width=4096):
    """A bf16 Linear on this CPU: as stored (bf16) vs weights cast to fp32 for the call."""
    from skrr.compute import cpu_slowdown, weights_in

    lin = torch.nn.Linear(width, width, bias=False).to(torch.bfloat16)
    x = torch.randn(rows, width)

    def best(fn, repeats=3):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def upcast():
        with weights_in(torch.float32, lin):
            lin(x)

    bf16, fp32 = best(lambda: lin(x.bfloat16())), best(upcast)
    print(f"\n## compute dtype: {width}x{width} bf16 Linear on {rows} rows, {torch.get_num_threads()} thread(s)")
    print(f"bf16 as stored {bf16:.3f} s, fp32 with the weights cast per call {fp32:.3f} s: {ratio(bf16, fp32)} faster; "
          f"probe (bf16/fp32 matmul): {cpu_slowdown(torch.bfloat16):.2f}x")


def paper_estimate(args, cost_attn, cost_ffn, measured_ratio):
    """Sub-block x prompt evaluations of the paper's search, times a per-sub-block cost."""
    n, depth, k, prompts, tokens = 48, 24, 3, 1000, 300
    slow = sum((n if t == 0 else k * (n - t)) * (n - t - 1) for t in range(depth)) * prompts
    fast = slow / measured_ratio
    # if the cache cannot hold states across calls (at this scale: ~2.4 GB per position for all
    # prompts), only the parent's prefix inside one call is shared: parent run + suffixes
    within_call = sum((1 if t == 0 else k) * ((n - t) * (n - t - 1) / 2 + (n - t)) for t in range(depth)) * prompts
    d, dff, hd = XXL["d_model"], XXL["d_ff"], XXL["num_heads"] * XXL["d_kv"]
    flops_attn = tokens * (2 * 4 * d * hd + 2 * 2 * tokens * hd)  # q,k,v,o projections + scores/values
    flops_ffn = tokens * 2 * 3 * d * dff  # gated-gelu: wi_0, wi_1, wo
    per_prompt_gpu = (flops_attn + flops_ffn) / 2 / (args.gpu_tflops * 1e12)
    scale = tokens / args.cost_tokens  # measured at cost_tokens per prompt; assume linear in tokens
    per_prompt_cpu = (cost_attn + cost_ffn) / 2 * scale
    print("\n## ESTIMATE (not measured): paper-scale search, T5-XXL 48 sub-blocks, 1000 prompts x 300 tokens, "
          "k=3, depth 24")
    print(f"sub-block x prompt evaluations (upper bound, no set de-duplication): straightforward {slow:,.0f}, "
          f"fast ~{fast:,.0f} (measured ratio {measured_ratio:.2f}x applied)")
    print(f"measured here on CPU at full width: attention {cost_attn * 1e3:.2f} ms, FFN {cost_ffn * 1e3:.2f} ms "
          f"per sub-block x prompt of {args.cost_tokens} tokens")
    print(f"GPU per sub-block x prompt (300 tokens): {per_prompt_gpu * 1e3:.3f} ms = "
          f"{(flops_attn + flops_ffn) / 2 / 1e9:.1f} GFLOP / assumed {args.gpu_tflops:.0f} TFLOP/s effective bf16 "
          f"(H100: 989 peak dense; assumption ~40% utilisation)")
    print(f"fast at the measured ratio assumes the state cache holds the run's states; with only per-call "
          f"prefix sharing (cache too small at this scale): {within_call:,.0f} ({slow / within_call:.2f}x)")
    for label, per in (("GPU (assumed throughput)", per_prompt_gpu), ("this CPU (measured cost, x tokens)", per_prompt_cpu)):
        print(f"  {label:36}: straightforward {slow * per / 3600:9.1f} h, fast {fast * per / 3600:7.1f} h "
              f"(measured ratio) .. {within_call * per / 3600:7.1f} h (per-call sharing only)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["tiny", "xxl-slice"], choices=sorted(PRESETS))
    ap.add_argument("--only", choices=["fast", "buckets", "dtype"], help="run one part (default: all)")
    ap.add_argument("--bucket-prompts", type=int, default=16, dest="bucket_prompts",
                    help="prompts in the length-bucket comparison")
    ap.add_argument("--layers", type=int, help="T5 blocks (2 sub-blocks each); default per model")
    ap.add_argument("--prompts", type=int, help="calibration prompts; default per model")
    ap.add_argument("--max-length", type=int, dest="max_length", help="tokens per prompt; default per model")
    ap.add_argument("--depth", type=int, help="search depth; default per model")
    ap.add_argument("--beam", type=int, default=3, help="beam width k")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights and compute dtype")
    ap.add_argument("--save", help="write the fast searches' plans and D values (JSON) to this file")
    ap.add_argument("--against", help="check the fast searches against a file written by --save (another CPU/GPU)")
    ap.add_argument("--batch-size", type=int, default=8, dest="batch_size")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the machine is shared)")
    ap.add_argument("--gpu-tflops", type=float, default=400.0, dest="gpu_tflops",
                    help="assumed effective bf16 throughput for the paper-scale estimate")
    ap.add_argument("--cost-tokens", type=int, default=64, dest="cost_tokens",
                    help="tokens per prompt when measuring the full-width per-sub-block cost")
    args = ap.parse_args()
    if args.beam < 1 or (args.depth is not None and args.depth < 1):
        ap.error("--beam and --depth must be >= 1")
    torch.set_num_threads(args.threads)
    depth_arg = args.depth
    if args.only in (None, "buckets"):
        args.depth = depth_arg or 4
        bench_buckets(args)
    if args.only in (None, "dtype") and args.device == "cpu":
        bench_compute_dtype(args)
    if args.only not in (None, "fast"):
        return
    ratios, saved = [], {}
    for name in args.models:
        args.depth = depth_arg
        _, slow, fast = bench_model(name, args)
        ratios.append(slow["evals"] / fast["evals"])
        saved[name] = fast["plan"]
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"dtype": args.dtype, "capability": torch.backends.cpu.get_cpu_capability(), "plans": saved}, f)
    if args.against:
        with open(args.against) as f:
            other = json.load(f)
        for name, plan in saved.items():
            theirs = json.loads(json.dumps(plan))  # the same JSON round trip as the saved side
            worst = check_contract(other["plans"][name], theirs, TOLERANCE[DTYPES[args.dtype]],
                                   f"{name}: {other['capability']} vs {torch.backends.cpu.get_cpu_capability()}")
            print(f"{name}: this run ({torch.backends.cpu.get_cpu_capability()}) vs {args.against} "
                  f"({other['capability']}): plans identical, largest relative D difference {worst:.2e}")
    full = build_side(**XXL, layers=1, max_length=args.cost_tokens, caption=1152, device=args.device)
    cost_attn, cost_ffn = sub_block_cost(full, rows=4, length=args.cost_tokens, device=args.device)
    paper_estimate(args, cost_attn, cost_ffn, min(ratios))


if __name__ == "__main__":
    main()
