"""Straightforward vs fast Skrr search, on the same model and data in one process.

For each model: beam search + re-use with `fast=False` (a full forward per candidate) and with
`fast=True` (prefix-state cache + candidates stacked along the batch); prints the ratios
(straightforward / fast) of sub-block forward evaluations, wall time and peak memory, and
asserts the exactness contract (docs/exactness.md): identical plans, every D value within the compute
dtype's relative tolerance (skrr.search.compute.TOLERANCE), and prints the smallest decision margins.
`--save F` writes the fast search's plans and D values; `--against F` checks another run's (another
CPU, `ATEN_CPU_CAPABILITY=avx2 ...`, a GPU) against this one by the same contract.
Finally an *estimate* of the paper-scale search time (T5-XXL, 48 sub-blocks, 1000 prompts x
300 tokens, k=3, depth 24) from per-sub-block costs.

    python benchmarks/search.py                       # tiny T5 (24 sub-blocks) + T5-XXL-width slice
    python benchmarks/search.py --models tiny --depth 12 --beam 3
    python benchmarks/search.py --only fast --dtype bfloat16           # the contract for a bf16 search

With `--ranks N`: the data-parallel search instead (skrr.search.distributed). For each model, the fast
search in 1 process and in N gloo ranks (one thread each, as separate processes), asserting that
plans and D per depth are identical, also for ShortGPT, LaCo and FinerCut; prints the wall-time
ratio (1 rank / N ranks) and the per-rank cache memory ratio (prefix states + dense targets held).

    python benchmarks/search.py --ranks 2
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers.models.embeddings import PixArtAlphaTextProjection  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import T5Config, T5EncoderModel  # noqa: E402

from skrr.encoders.view import to_sub_blocks, total_params  # noqa: E402
from skrr.methods import load as load_method  # noqa: E402
from skrr.models import TextSide  # noqa: E402
from skrr.models.tiny import _corpus, t5_tokenizer  # noqa: E402
from skrr.prune import make_context  # noqa: E402
from skrr.search import distributed  # noqa: E402
from skrr.search.calibration import build_calibration  # noqa: E402
from skrr.search.compute import ASSUMED_GPU, ASSUMED_TFLOPS, DTYPES, TOLERANCE  # noqa: E402
from skrr.search.discrepancy import Discrepancy  # noqa: E402
from skrr.search.prefix_cache import PrefixCachedDiscrepancy  # noqa: E402
from skrr.search.skip_reuse import beam_search, near_ties, reuse_phase  # noqa: E402

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
    from skrr.search.compute import cpu_slowdown, weights_in

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
          f"{(flops_attn + flops_ffn) / 2 / 1e9:.1f} GFLOP / assumed {args.gpu_tflops:.0f} TFLOP/s effective "
          f"{args.dtype} on one {ASSUMED_GPU} (skrr.search.compute.ASSUMED_TFLOPS: dense peaks 989 bf16, 67 fp32)")
    print(f"fast at the measured ratio assumes the state cache holds the run's states; with only per-call "
          f"prefix sharing (cache too small at this scale): {within_call:,.0f} ({slow / within_call:.2f}x)")
    for label, per in (("GPU (assumed throughput)", per_prompt_gpu), ("this CPU (measured cost, x tokens)", per_prompt_cpu)):
        print(f"  {label:36}: straightforward {slow * per / 3600:9.1f} h, fast {fast * per / 3600:7.1f} h "
              f"(measured ratio) .. {within_call * per / 3600:7.1f} h (per-call sharing only)")


# --- the data-parallel search (--ranks N) ----------------------------------------------------
RANK_PRESETS = {  # batches to share out (>= 2 per rank where the model allows); the XXL slice at 2 blocks
    "tiny": dict(prompts=48, batch_size=8),  # 6 batches + the null prompt
    "xxl-slice": dict(layers=2, prompts=8, batch_size=2, depth=3),  # 4 batches + null; ~1.5 GB of weights a rank
}
BASELINES = {"shortgpt": {"reuse": True}, "laco": {"T": 0.5, "C": 2, "L": 0, "H": 24, "I": 1, "reuse": True},
             "finercut": {"null_term": True}}


def rank_search(rank, world, port, name, p, args, out_dir):
    """One rank (or the single process, world 1): the Skrr search, timed, then each baseline."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env("cpu", timeout_s=1800)
    with torch.no_grad():
        side = build_side(p["d_model"], p["d_ff"], p["num_heads"], p["d_kv"], p["layers"], p["max_length"],
                          p["caption"], "cpu")
        calibration = OmegaConf.create({"source": "builtin", "pool": 4 * p["prompts"], "size": p["prompts"], "seed": 1})
        ctx = make_context(side, calibration, batch_size=p["batch_size"], progress=False)
        disc = ctx.discrepancy(metric="mse", projection=True, null_term=True)
        distributed.barrier("the start")
        t0 = time.perf_counter()
        result = beam_search(disc, ctx.sub_blocks, ctx.total, args.beam, depth=p["depth"], progress=False)
        reuse, trace = reuse_phase(disc, ctx.sub_blocks, result.order, progress=False)
        seconds = time.perf_counter() - t0
        targets = sum(b["target"].numel() * b["target"].element_size() for b in disc.batches if b["target"] is not None)
        out = {"seconds": seconds, "cache": disc.peak_cache_bytes, "targets": targets, "batches": disc.mine,
               "skrr": [result.order, result.depth_d, [[list(s), d] for beams in result.beams for s, d in beams],
                        {str(k): v for k, v in reuse.items()}, trace]}
        del disc
        for method, extra in BASELINES.items():
            baseline = load_method(method, batch_size=p["batch_size"], projection=True, **extra)
            plans = baseline.run(ctx, [0.2])
            out[method] = [{"skip": pl.skip, "reuse": {str(k): v for k, v in pl.reuse.items()},
                            "info": {k: v for k, v in pl.info.items() if not k.startswith("_")}} for pl in plans]
    distributed.close()
    (Path(out_dir) / f"{world}-{rank}.json").write_text(json.dumps(out))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(world, name, p, args, out_dir) -> list[dict]:
    """`world` processes (spawned, so each has its own interpreter and one thread) -> their results."""
    import torch.multiprocessing as mp

    mp.start_processes(_rank_entry, args=(world, free_port(), name, p, args, out_dir), nprocs=world,
                       start_method="spawn")
    return [json.loads((Path(out_dir) / f"{world}-{r}.json").read_text()) for r in range(world)]


def _rank_entry(rank, world, port, name, p, args, out_dir):
    rank_search(rank, world, port, name, p, args, out_dir)


def _busy(rank, work, out_dir):
    torch.set_num_threads(1)
    a = torch.randn(192, 192)
    t0 = time.perf_counter()
    for _ in range(work):
        a = torch.tanh(a @ a)
    (Path(out_dir) / f"busy{rank}").write_text(str(time.perf_counter() - t0))


def parallel_ceiling(n: int, work: int = 300) -> float:
    """The speedup this machine gives n single-thread processes right now: the same fixed matmul
    work timed alone, then in each of n at once (n x t1 / tn; n on idle cores, less when shared)."""
    import torch.multiprocessing as mp

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (1, n):
            mp.start_processes(_busy, args=(work, tmp), nprocs=procs, start_method="spawn")
            times.append(max(float((Path(tmp) / f"busy{r}").read_text()) for r in range(procs)))
    return n * times[0] / times[1]


def bench_ranks(name, args) -> None:
    p = {**PRESETS[name], **RANK_PRESETS[name]}
    for key in ("layers", "prompts", "max_length", "depth"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SKRR_CACHE"] = tmp  # the calibration targets: rank 0 writes them, the others map them
        one = launch(1, name, p, args, tmp)
        many = launch(args.ranks, name, p, args, tmp)
    print(f"\n## {args.ranks} ranks vs 1: {name}, d_model={p['d_model']} d_ff={p['d_ff']} sub-blocks={2 * p['layers']} "
          f"prompts={p['prompts']}x{p['max_length']} tokens in batches of {p['batch_size']}, k={args.beam}, "
          f"depth={p['depth']}, one thread per rank, CPU")
    same = {m: all(r[m] == one[0][m] for r in many) for m in ("skrr", *BASELINES)}
    for r, res in enumerate(many):
        print(f"rank {r}: batches {res['batches']}, search {res['seconds']:.2f} s, prefix cache peak "
              f"{res['cache'] / 2**20:.2f} MiB, dense targets held {res['targets'] / 2**20:.2f} MiB")
    ceiling = parallel_ceiling(args.ranks)
    wall = max(r["seconds"] for r in many)
    mem_one = one[0]["cache"] + one[0]["targets"]
    mem_rank = max(r["cache"] + r["targets"] for r in many)
    print(f"| {'':34} | {'1 rank':>10} | {f'{args.ranks} ranks':>10} | {'ratio':>7} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
    print(f"| {'Skrr search wall time (s)':34} | {one[0]['seconds']:>10.2f} | {wall:>10.2f} | "
          f"{ratio(one[0]['seconds'], wall):>7} |  (speedup, goal >= 1.7x at 2 ranks)")
    print(f"| {'machine ceiling now (fixed work)':34} | {'':>10} | {'':>10} | {ceiling:>6.2f}x |  (a matmul loop in "
          f"1 vs {args.ranks} processes: what this machine's free cores allow)")
    print(f"| {'cache per rank (MiB, largest rank)':34} | {mem_one / 2**20:>10.2f} | {mem_rank / 2**20:>10.2f} | "
          f"{ratio(mem_rank, mem_one):>7} |  (rank / 1 rank, goal about 1/{args.ranks})")
    print("identical plans, D per depth, beams, re-use and baseline decisions (1 rank vs "
          f"{args.ranks}): " + ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in same.items()))
    for m, ok in same.items():
        if not ok:
            print(f"{m}: first difference: {first_difference(one[0][m], next(r[m] for r in many if r[m] != one[0][m]))}")
    assert all(same.values()), "sharding changed a plan or a D value"


def first_difference(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {str(a)[:200]} vs {str(b)[:200]}"


def rank_estimate(args) -> None:
    """Paper-scale cache and time with N GPUs, from sizes alone (ESTIMATE)."""
    n, k, prompts, tokens, d = 48, 3, 1000, 300, XXL["d_model"]
    per_position = prompts * tokens * d * 2  # bf16 hidden states of every prompt at one position
    weights = 4_762_310_656 * 2  # T5-XXL encoder in bf16
    chain = k * n * per_position  # the k beams' states at every position (what the prefix cache wants)
    print("\n## ESTIMATE (not measured): paper-scale data-parallel search (T5-XXL, 1000 prompts x 300 tokens, "
          f"k={k}, 48 sub-blocks), 80 GB GPUs")
    print(f"hidden states per position, all prompts: {per_position / 1e9:.2f} GB; the k beams' states at all "
          f"48 positions: {chain / 1e9:.0f} GB; weights {weights / 1e9:.1f} GB per GPU")
    for gpus in (1, 8):
        room = 80e9 - weights - 4e9  # minus weights and ~4 GB of activations/workspace
        fits = room / (per_position / gpus)
        print(f"  {gpus} GPU(s): {per_position / gpus / 1e9:.2f} GB per position per GPU -> room for ~{fits:.0f} "
              f"positions' states ({'all beams cached' if fits >= k * n else 'cache-bound: states recomputed'}); "
              f"time ~{'the 1-GPU time' if gpus == 1 else f'1/{gpus} of it plus one small all-gather per call'}")


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
    ap.add_argument("--gpu-tflops", type=float, default=None, dest="gpu_tflops",
                    help="assumed effective GPU throughput for the paper-scale estimate (default: "
                         "skrr.search.compute.ASSUMED_TFLOPS of --dtype: 50 float32, 400 bfloat16)")
    ap.add_argument("--ranks", type=int, help="compare the search in N data-parallel ranks with 1 (see above)")
    ap.add_argument("--cost-tokens", type=int, default=64, dest="cost_tokens",
                    help="tokens per prompt when measuring the full-width per-sub-block cost")
    args = ap.parse_args()
    args.gpu_tflops = args.gpu_tflops or ASSUMED_TFLOPS[args.dtype]
    if args.beam < 1 or (args.depth is not None and args.depth < 1):
        ap.error("--beam and --depth must be >= 1")
    torch.set_num_threads(args.threads)
    if args.ranks is not None:
        if args.ranks < 2:
            ap.error("--ranks must be >= 2")
        for name in args.models:
            bench_ranks(name, args)
        rank_estimate(args)
        return
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
