"""Generation runner: prompts -> PNGs named by prompt index + metadata JSONL; batched, resumable, sharded.

Seed policy: image i uses torch.Generator().manual_seed(base_seed + i), so the dense and a pruned
pipeline draw the same initial noise for the same prompt and their images pair up (DreamSim).
Batching and sharding: the prompts are cut into fixed chunks of B = batch_size, chunk c = indices
[c*B, (c+1)*B), and rank r of world w takes the chunks c with c % w == r (RANK/WORLD_SIZE as set by
torchrun / accelerate launch); `merge` then checks completeness and writes metadata.jsonl. CPU and
GPU kernels may round differently for different batch shapes, so an image is reproducible only
inside its own batch: every image is made inside its chunk whatever the rank count and whatever is
already on disk. A resume or a heal regenerates the whole chunk of a missing image and writes only
the missing files, so the bytes equal those of an uninterrupted run with any number of ranks.

A share of a prompt set (`eval.fraction`, and each round of `eval.budget=adaptive`) is a number of
whole chunks taken in one fixed seeded order (`chunk_order`): a larger share holds every chunk of a
smaller one, and each image is still made inside its own chunk, so it is the image a full run makes.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from skrr.errors import InputError
from skrr.eval.sampler import SamplerConfig

METADATA = "metadata.jsonl"


def image_name(index: int) -> str:
    return f"{index:05d}.png"


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in [0, world_size={world_size}); fix --rank/--world-size or RANK/WORLD_SIZE")
    return rank, world_size


def local_device(device: str) -> str:
    """cuda -> cuda:<LOCAL_RANK> under torchrun, so each rank uses its own GPU."""
    if str(device) == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return str(device)


def call_options(pipe) -> dict:
    """Arguments every call of pipe(...) needs here: no resolution binning where __call__ has it
    (PixArt), so images come out at exactly the sampler's size; a text-to-video pipeline (Wan) makes
    one frame, its own text-to-image mode, which the image metrics score."""
    parameters = inspect.signature(pipe.__call__).parameters
    return {**({"use_resolution_binning": False} if "use_resolution_binning" in parameters else {}),
            **({"num_frames": 1} if "num_frames" in parameters else {})}


def output_images(output) -> list:
    """The images of a pipeline's output: `images`, or a video pipeline's first frame of each video."""
    return output.images if hasattr(output, "images") else [frames[0] for frames in output.frames]


def pipeline_kwargs(pipe, cfg: SamplerConfig) -> dict:
    """Sampler arguments for pipe(...), and the model's `max_length` as max_sequence_length, so the
    encoder sees the token length it was pruned on (the pipelines' defaults, 300/256/512, differ
    from a model's override)."""
    kwargs = dict(num_inference_steps=cfg.num_inference_steps, height=cfg.height, width=cfg.width, output_type="pil")
    if cfg.guidance_scale is not None:
        kwargs["guidance_scale"] = cfg.guidance_scale
    length = getattr(pipe, "text_max_length", None)  # set by skrr.models.load_pipeline
    if length is not None and "max_sequence_length" in inspect.signature(pipe.__call__).parameters:
        kwargs["max_sequence_length"] = int(length)  # feed the encoder as calibration did
    return {**kwargs, **call_options(pipe)}


CHUNK_ORDER_SEED = 0  # part of what a share of the prompts is: changing it changes every partial row


def num_chunks(num_prompts: int, batch_size: int) -> int:
    return -(-num_prompts // batch_size)


def chunk_order(num_prompts: int, batch_size: int) -> list[int]:
    """Every chunk index once, in a fixed seeded order: a share takes chunks from the front, so
    prompt files grouped by task (GenEval's) still give every share a mix of them."""
    import numpy as np

    return np.random.default_rng(CHUNK_ORDER_SEED).permutation(num_chunks(num_prompts, batch_size)).tolist()


def chunks_for(fraction: float, num_prompts: int, batch_size: int) -> list[int] | None:
    """The chunk indices (sorted) of a share of the prompts: the first ceil(fraction x chunks) of
    `chunk_order`; None for the whole set (fraction 1, or a share that covers every chunk)."""
    total = num_chunks(num_prompts, batch_size)
    count = min(total, max(1, math.ceil(round(fraction * total, 9))))  # round: 0.25 x 8 is 2, not 2.0000001
    return None if count == total else sorted(chunk_order(num_prompts, batch_size)[:count])


def chunks(rank: int, world_size: int, num_prompts: int, batch_size: int,
           only: list[int] | None = None) -> list[list[int]]:
    """This rank's fixed batches: chunk c = [c*B, (c+1)*B); of the chunks taken (`only`, default all),
    the one at position p goes to rank p % world_size (independent of what exists, and of the rank count)."""
    taken = range(num_chunks(num_prompts, batch_size)) if only is None else only
    return [list(range(c * batch_size, min((c + 1) * batch_size, num_prompts)))
            for p, c in enumerate(taken) if p % world_size == rank]


def share(rank: int, world_size: int, num_prompts: int, batch_size: int, only: list[int] | None = None) -> list[int]:
    """The prompt indices this rank generates."""
    return [i for chunk in chunks(rank, world_size, num_prompts, batch_size, only) for i in chunk]


def generate(pipe, prompts: list[str], out_dir: str | os.PathLike, cfg: SamplerConfig | None = None,
             rank: int | None = None, world_size: int | None = None, extra: dict | None = None,
             only: list[int] | None = None) -> list[int]:
    """Generate this rank's missing images, each inside its fixed chunk (of the chunks `only`, default
    all). Returns the indices written."""
    cfg = cfg if cfg is not None else SamplerConfig()
    if not prompts:
        raise InputError("empty prompt set; pass at least one prompt (check the prompt file path)")
    if cfg.batch_size < 1:
        raise InputError(f"sampler batch_size must be >= 1, got {cfg.batch_size}")
    rank, world_size = resolve_rank(rank, world_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = []  # (chunk, its missing indices): the file checks are made once
    for batch in chunks(rank, world_size, len(prompts), cfg.batch_size, only):
        wanted = {i for i in batch if not (out_dir / image_name(i)).exists()}
        if wanted:
            todo.append((batch, wanted))
    if not todo:  # resumed and complete: nothing to load or show
        return []
    kwargs = pipeline_kwargs(pipe, cfg)
    settings = {**asdict(cfg), "dtype": str(getattr(pipe, "dtype", None)), "pipeline": type(pipe).__name__,
                **(extra or {})}
    meta_path = out_dir / f"metadata.rank{rank}.jsonl"
    written = []
    bar = tqdm(total=sum(len(wanted) for _, wanted in todo), desc=f"generate rank {rank}/{world_size}", unit="img")
    if hasattr(pipe, "set_progress_bar_config"):  # one bar over images, not one per batch of steps
        pipe.set_progress_bar_config(disable=True)
    for batch, wanted in todo:
        generators = [torch.Generator().manual_seed(cfg.base_seed + i) for i in batch]
        images = output_images(pipe(prompt=[prompts[i] for i in batch], generator=generators, **kwargs))
        # metadata first: a crash before the PNG lands re-generates it and merge keeps the last row
        with open(meta_path, "a") as f:
            for i in batch:
                if i in wanted:
                    f.write(json.dumps({"index": i, "prompt": prompts[i], "seed": cfg.base_seed + i,
                                        "file": image_name(i), **settings}) + "\n")
        for i, image in zip(batch, images):
            if i not in wanted:  # already there: the chunk ran only to reproduce its neighbours exactly
                continue
            tmp = out_dir / f"{image_name(i)}.{os.getpid()}.tmp"  # two processes making one chunk never share a file
            image.save(tmp, format="PNG")
            os.replace(tmp, out_dir / image_name(i))
            written.append(i)
        bar.update(len(wanted))
    bar.close()
    return written


def merge(out_dir: str | os.PathLike, num_prompts: int, indices: list[int] | None = None,
          into: str | os.PathLike | None = None) -> Path:
    """Check that every index (of `indices`, default all) has its image and metadata row, then write
    their metadata.jsonl (sorted by index) into `into` (default: the image folder)."""
    out_dir = Path(out_dir)
    indices = range(num_prompts) if indices is None else indices
    missing = [i for i in indices if not (out_dir / image_name(i)).exists()]
    rows: dict[int, dict] = {}
    for shard in sorted(out_dir.glob("metadata.rank*.jsonl")):
        for line in shard.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["index"]] = row
    missing_meta = [i for i in indices if i not in rows and i not in missing]
    if missing or missing_meta:
        raise RuntimeError(f"{out_dir} is incomplete: {len(missing)} images missing (first {missing[:5]}), "
                           f"{len(missing_meta)} metadata rows missing (first {missing_meta[:5]}); "
                           "re-run generate for every rank (it resumes), then merge")
    into = out_dir if into is None else Path(into)
    tmp = into / (METADATA + ".tmp")
    with open(tmp, "w") as f:
        for i in indices:
            f.write(json.dumps(rows[i]) + "\n")
    os.replace(tmp, into / METADATA)
    return into / METADATA


def main(argv=None):
    from skrr.prompts.files import load_prompt_file

    parser = argparse.ArgumentParser(description="generate evaluation images (resumable, sharded)")
    parser.add_argument("command", choices=["generate", "merge"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--prompts", help="text/JSONL prompt file (for merge: to count prompts)")
    parser.add_argument("--pipeline", default="tiny_pixart", help="name for skrr.models.load_pipeline")
    parser.add_argument("--dtype", default=None, choices=[None, "float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rank", type=int, default=None)
    parser.add_argument("--world-size", type=int, default=None)
    args = parser.parse_args(argv)
    prompts = load_prompt_file(args.prompts)
    if args.command == "merge":
        print(merge(args.out, len(prompts)))
        return
    from skrr.models import load_pipeline

    dtype = getattr(torch, args.dtype) if args.dtype else None
    pipe = load_pipeline(args.pipeline, device=local_device(args.device), dtype=dtype)
    cfg = SamplerConfig(args.height, args.width, args.steps, args.guidance_scale, args.seed, args.batch_size)
    generate(pipe, prompts, args.out, cfg, args.rank, args.world_size, extra={"pipeline_name": args.pipeline})


if __name__ == "__main__":
    main()
