"""Score the toy-world pipeline on its exact benchmark, without the experiment runner.

    python -m skrr.experiments.toyworld.evaluate --n 96 --out /tmp/toyworld_eval --grid /tmp/toyworld_grid.png

Generates one image per prompt with skrr.eval.generate (seed i for prompt i), then scores the folder
with the toy world's GenEval (exact detector) and FID against renders of 10x as many true scenes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skrr.eval import generate as gen
from skrr.eval.geneval.evaluate import GenEval
from skrr.eval.images import list_images, load_images, to_uint8_tensor
from skrr.eval.metrics import score_folder

from . import WEIGHTS
from .captions import prompts
from .detect import ToyDetector
from .metrics import ToyFID


def save_grid(images, path, columns: int = 12, scale: int = 3) -> None:
    images = to_uint8_tensor(images).permute(0, 2, 3, 1).numpy()
    rows = -(-len(images) // columns)
    h, w = images.shape[1:3]
    grid = np.full((rows * (h + 2), columns * (w + 2), 3), 80, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = im
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


def main(argv=None):
    from .pipeline import ToyWorldPipeline

    ap = argparse.ArgumentParser(description="Score the toy world pipeline on its exact GenEval-style benchmark.")
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--out", type=Path, required=True, help="image folder (resumes)")
    ap.add_argument("--n", type=int, default=96, help="prompts (cycled over the six tasks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance-scale", type=float, default=4.5)
    ap.add_argument("--grid", type=Path, default=None, help="save a PNG grid of the generated images")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    metadata = prompts("geneval", args.n, args.seed)
    texts = [m["prompt"] for m in metadata]
    pipe = ToyWorldPipeline.from_pretrained(args.weights)
    sampler = gen.SamplerConfig(32, 32, args.steps, args.guidance_scale, args.seed, 64)
    gen.generate(pipe, texts, args.out, sampler, rank=0, world_size=1)
    gen.merge(args.out, len(texts))
    scores = score_folder(GenEval(detector=ToyDetector(), color_classifier=None), args.out, metadata)
    # the reference: ground truth for 10x as many prompts of the same mix (another seed)
    scores["fid"] = score_folder(ToyFID("geneval", 10 * args.n, args.seed + 1), args.out, texts)
    if args.grid:
        save_grid(load_images(list_images(args.out)), args.grid)
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
