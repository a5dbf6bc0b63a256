"""`make bench-gpu`: the one GPU check, ready for whenever a GPU is lent (about 5-8 minutes on one H100).

    python benchmarks/gpu_check.py --workdir DIR                     # CUDA: full-size random-weight PixArt-Sigma
    python benchmarks/gpu_check.py --tiny --device cpu --workdir DIR  # the same steps on the tiny twin (the tests)

On one device, in this order:
1. memory: peak memory of loading the pipeline and generating one 512x512 image (20 steps), dense,
   then with the paper's Skrr plan at 41.9% (the paper: 10.18 vs 6.46 GB). The pruned encoder is
   saved and loaded back without its dense weights, as a user would ship it. CUDA: the allocator's
   peak; CPU: the sampled process RSS (rough).
2. images per second of the dense and the pruned pipeline (batch 1, after the measured image).
3. a slice of the real search: Skrr (k=3) on T5-XXL's width (benchmarks/search.py's `xxl-slice`)
   with its weights and compute in float32, then in bfloat16: wall time, and whether the decisions agree.
It prints a table with ratios and writes DIR/gpu_check.json. Full-size random weights are built once
under $SKRR_CACHE/realsize (benchmarks/realsize.py's builder, about 12 GB), never in the repository.
With no CUDA device it says so in one line and exits 1 (`--tiny --device cpu` runs anywhere).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks (realsize, search)

import torch  # noqa: E402

GIB = 1024 ** 3
PROMPT = "a photo of a cat sitting on a wooden table"
PAPER_PLAN = "paper:pixart_sigma/skrr@0.40"  # 41.92% of T5-XXL: the paper's first 21 skips


def pruning_plan(cfg, tiny: bool):
    """The paper's plan on the real encoder; on the tiny twin, the same order's prefix that fits it."""
    from skrr import Plan, to_sub_blocks
    from skrr.models import load_text_side
    from skrr.presets import PAPER, load_plan

    if not tiny:
        return load_plan(PAPER_PLAN)
    n = len(to_sub_blocks(load_text_side(cfg).encoder))
    order = [i for i in PAPER["pixart_sigma"]["skrr"]["order"] if i < n]
    return Plan(skip=order[: max(1, round(0.42 * n))], method={"name": "skrr", "preset": "gpu_check tiny"})


def generate(pipe, sampler, count: int) -> float:
    """Seconds per image over `count` images (seeded, batch 1)."""
    from skrr.eval.generate import pipeline_kwargs

    sync(pipe.device)
    start = time.perf_counter()
    for i in range(count):
        pipe(prompt=[PROMPT], generator=[torch.Generator().manual_seed(i)], **pipeline_kwargs(pipe, sampler))
    sync(pipe.device)
    return (time.perf_counter() - start) / count


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generation_step(cfg, pipe_dir: Path, plan, workdir: Path, args) -> dict:
    """Peak memory and images per second, dense then pruned (saved, then loaded without dense weights)."""
    from search import PeakMemory

    from skrr import apply_plan, load_pruned, save_pruned
    from skrr.eval.generate import SamplerConfig
    from skrr.models import load_pipeline, read_from

    sampler = SamplerConfig(height=args.size, width=args.size, num_inference_steps=args.steps, batch_size=1)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    source = read_from(cfg, pipe_dir)
    out = {}
    for variant in ("dense", "pruned"):
        free()
        with PeakMemory(args.device) as mem:
            extra = {}
            if variant == "pruned":
                extra[cfg.text_encoder] = load_pruned(workdir / "pruned", device=args.device, dtype=dtype)
            pipe = load_pipeline(source, device=args.device, dtype=dtype, **extra)
            pipe.set_progress_bar_config(disable=True)
            first = generate(pipe, sampler, 1)
        out[f"peak_gib_{variant}"] = mem.bytes / GIB
        out[f"first_image_s_{variant}"] = first
        out[f"images_per_s_{variant}"] = 1 / generate(pipe, sampler, args.images)
        if variant == "dense":  # prune the loaded dense encoder and ship it, as skrr-prune's save_encoder does
            encoder = getattr(pipe, cfg.text_encoder).to("cpu")
            with torch.no_grad():
                apply_plan(encoder, plan)
            save_pruned(encoder, plan, workdir / "pruned")
            out["sparsity"] = plan.sparsity
        del pipe
    return out


def search_step(args) -> dict:
    """The search slice in float32, then bfloat16: seconds and whether the decisions agree."""
    import search as bench

    from skrr.encoders.view import to_sub_blocks, total_params
    from skrr.models.tiny import _corpus
    from skrr.search.calibration import build_calibration

    preset = dict(bench.PRESETS["tiny" if args.tiny else "xxl-slice"])
    if args.tiny:  # a smoke of the same path: the tests run it on two busy cores
        preset.update(prompts=8, depth=2)
    settings = argparse.Namespace(device=args.device, beam=3, depth=preset["depth"])
    out, decided = {}, {}
    for dtype in ("float32", "bfloat16"):
        free()
        side = bench.build_side(preset["d_model"], preset["d_ff"], preset["num_heads"], preset["d_kv"],
                                preset["layers"], preset["max_length"], preset["caption"], args.device,
                                dtype=getattr(torch, dtype))
        with tempfile.TemporaryDirectory() as tmp:
            calib = build_calibration(side, _corpus(preset["prompts"], seed=1), batch_size=8, device=args.device,
                                      cache_dir=tmp)
        enc = to_sub_blocks(side.encoder)
        result = bench.search(side, calib, enc.sub_blocks, total_params(side.encoder), settings, fast=True)
        out[f"search_s_{dtype}"] = result["seconds"]
        decided[dtype] = bench.decisions(result["plan"])
        del side, calib
    out["search_same_decisions"] = decided["float32"] == decided["bfloat16"]
    out["search_skip_order_float32"] = list(decided["float32"][0])
    out["search_skip_order_bfloat16"] = list(decided["bfloat16"][0])
    return out


def table(r: dict, device: str, what: str) -> str:
    def row(name, a, b, fmt):
        return f"| {name:28} | {a:>10{fmt}} | {b:>10{fmt}} | {b / a if a else float('nan'):>7.3f} |"

    lines = [f"gpu check on {device} ({what})", f"| {'':28} | {'dense':>10} | {'pruned':>10} | {'ratio':>7} |",
             f"|{'-' * 30}|{'-' * 12}|{'-' * 12}|{'-' * 9}|",
             row(f"peak memory (GiB), {100 * r['sparsity']:.1f}%", r["peak_gib_dense"], r["peak_gib_pruned"], ".3f"),
             row("images per second", r["images_per_s_dense"], r["images_per_s_pruned"], ".3f"),
             f"| {'':28} | {'float32':>10} | {'bfloat16':>10} | {'ratio':>7} |",
             row("search slice (s)", r["search_s_float32"], r["search_s_bfloat16"], ".2f"),
             f"search decisions agree (float32 vs bfloat16): {'yes' if r['search_same_decisions'] else 'no'}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="the pruned encoder and gpu_check.json go here (not the repo)")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu with --tiny")
    p.add_argument("--tiny", action="store_true", help="the tiny twin and search preset instead of full size")
    p.add_argument("--cache", default=None, help="full-size checkpoints (default $SKRR_CACHE/realsize)")
    p.add_argument("--size", type=int, default=512, help="image height and width")
    p.add_argument("--steps", type=int, default=20, help="sampling steps per image")
    p.add_argument("--images", type=int, default=3, help="images timed per pipeline for images/s")
    args = p.parse_args(argv)
    for key in ("size", "steps", "images"):
        if getattr(args, key) < 1:
            p.error(f"--{key} must be >= 1, got {getattr(args, key)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: `make bench-gpu` measures on a GPU, so nothing was measured "
              "(`python benchmarks/gpu_check.py --tiny --device cpu --workdir DIR` runs its steps on the CPU)",
              file=sys.stderr)
        return 1
    if not args.tiny and not args.device.startswith("cuda"):
        p.error("full size runs on a CUDA device; on the CPU use --tiny")
    workdir = Path(args.workdir).resolve()
    repo = Path(__file__).resolve().parents[1]
    if workdir == repo or repo in workdir.parents:
        p.error(f"--workdir {workdir} is inside the repository; put it elsewhere")
    workdir.mkdir(parents=True, exist_ok=True)

    from skrr.models import model_config, resolve_pretrained

    start = time.perf_counter()
    cfg = model_config("tiny_pixart" if args.tiny else "pixart_sigma")
    if args.tiny:
        pipe_dir = Path(resolve_pretrained(cfg))
    else:
        import realsize

        pipe_dir = realsize.build("pixart_sigma", Path(args.cache or realsize.default_cache()))
    built = time.perf_counter() - start
    r = {"device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
         "model": cfg.name, "build_s": built}
    r.update(generation_step(cfg, pipe_dir, pruning_plan(cfg, args.tiny), workdir, args))
    r.update(search_step(args))
    r["wall_s"] = time.perf_counter() - start
    (workdir / "gpu_check.json").write_text(json.dumps(r, indent=2))
    what = "tiny twin, random weights" if args.tiny else "full-size random weights"
    print(table(r, r["device"], what))
    print(f"wall time {r['wall_s']:.0f} s (weights built or found in {built:.0f} s); numbers in {workdir / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
