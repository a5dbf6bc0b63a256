"""Exact evaluation in the toy world: GenEval with the exact detector, FID and pairwise similarity
with the toy feature network.

    python -m experiments.toyworld.evaluate --n 96 --grid /tmp/toyworld_grid.png

GenEval: `detect` + GenEval's official rules (eval.geneval.rules) -> six task accuracies + overall.
FID: Frechet distance between FeatureNet features of generated images and of rendered scenes
from the training distribution (the toy world's "real images"). Similarity: cosine of FeatureNet
features of the dense and the pruned image for the same prompt and seed (DreamSim's role; dense = 1).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from eval.geneval.evaluate import GenEval
from eval.geneval.rules import RuleConfig, summarize

from .captions import prompt_scenes, prompts, sample_training_example
from .detect import ToyDetector
from .features import FeatureNet
from .scenes import render

WEIGHTS = Path(__file__).parent / "weights"


def to_uint8_array(images) -> np.ndarray:
    """PIL list / float (N,H,W,3) in [0,1] / uint8 (N,H,W,3) -> uint8 (N,H,W,3)."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    arrays = [np.asarray(im) for im in images]
    out = np.stack(arrays)
    if out.dtype != np.uint8:
        out = np.clip(np.rint(out.astype(float) * 255), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------- GenEval, exact detector
def geneval_results(images, metadata: list[dict], rules: RuleConfig = RuleConfig()) -> list[dict]:
    """One {'tag', 'prompt', 'correct', 'reason'} per image (one metadata dict per image): the
    GenEval metric of eval/ with the exact detector, which reads colours instead of classifying them."""
    metric = GenEval(detector=ToyDetector(), color_classifier=None, rules=rules)
    metric.update([Image.fromarray(a) for a in to_uint8_array(images)], metadata)
    return metric.results


def geneval_scores(images, metadata: list[dict], rules: RuleConfig = RuleConfig()) -> dict[str, float]:
    """The six task accuracies and overall (their mean), GenEval's summary."""
    return summarize(geneval_results(images, metadata, rules))


# ---------------------------------------------------------------- features: FID, similarity
class ToyFeatureExtractor(torch.nn.Module):
    """uint8 (N, 3, H, W) -> (N, 256) FeatureNet features; drops into eval.fid.FID(feature_extractor=...)."""

    def __init__(self, net: FeatureNet):
        super().__init__()
        self.net = net.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 127.5 - 1)

    @torch.no_grad()
    def cell_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.cell_map(x.float() / 127.5 - 1)


def load_feature_extractor(path=WEIGHTS / "features") -> ToyFeatureExtractor:
    return ToyFeatureExtractor(FeatureNet.from_pretrained(path))


def features(images, extractor: ToyFeatureExtractor, kind: str = "pooled") -> np.ndarray:
    """'pooled' (N, 256) for FID; 'cells' (N, 2048) per-cell map for pairwise similarity."""
    x = torch.from_numpy(np.ascontiguousarray(to_uint8_array(images))).permute(0, 3, 1, 2)
    fn = extractor if kind == "pooled" else extractor.cell_map
    return torch.cat([fn(b) for b in x.split(256)]).numpy().astype(np.float64)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("FID needs at least 2 images on each side")
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():  # the usual regularisation for near-singular covariances
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean.real))


def reference_images(n: int = 1000, seed: int = 12345) -> np.ndarray:
    """Rendered scenes from the training distribution: the toy world's real-image set for FID."""
    rng = np.random.default_rng(seed)
    return np.stack([render(sample_training_example(rng)[0]) for _ in range(n)])


def prompt_reference_images(task_mix: str = "geneval", n: int = 96, seed: int = 0) -> np.ndarray:
    """Renders of the ground-truth scenes behind `prompts(task_mix, n, seed)`: FID's reference
    for images generated from those prompts (same content distribution, exact pixels)."""
    return np.stack([render(scene) for scene, _ in prompt_scenes(task_mix, n, seed)])


def fid(images, extractor: ToyFeatureExtractor, reference=None) -> float:
    reference = reference_images() if reference is None else reference
    return frechet_distance(features(images, extractor), features(reference, extractor))


def pairwise_similarity(dense_images, pruned_images, extractor: ToyFeatureExtractor) -> np.ndarray:
    """Per pair cosine similarity (DreamSim's role: 1 = same image) of per-cell feature maps,
    centred on the mean map of rendered scenes so that two unrelated scenes are not similar
    merely because both are mostly black background."""
    a, b = features(dense_images, extractor, "cells"), features(pruned_images, extractor, "cells")
    if a.shape != b.shape:
        raise ValueError(f"dense and pruned image sets differ in size: {len(a)} vs {len(b)}")
    centre = features(reference_images(500, seed=54321), extractor, "cells").mean(0)
    a, b = a - centre, b - centre
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


# ---------------------------------------------------------------- generation + CLI
def generate(pipe, metadata: list[dict], seed: int = 0, batch_size: int = 64, steps: int = 20,
             guidance_scale: float = 4.5) -> np.ndarray:
    """One image per metadata dict, image i from generator seed `seed + i`; uint8 (N, 32, 32, 3)."""
    out = []
    for start in range(0, len(metadata), batch_size):
        chunk = metadata[start:start + batch_size]
        gens = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        out.append(pipe(prompt=[m["prompt"] for m in chunk], num_inference_steps=steps, guidance_scale=guidance_scale,
                        height=32, width=32, generator=gens, output_type="np", use_resolution_binning=False).images)
    return to_uint8_array(np.concatenate(out))


def save_grid(images, path, columns: int = 12, scale: int = 3) -> None:
    from PIL import Image

    images = to_uint8_array(images)
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
    ap.add_argument("--n", type=int, default=96, help="prompts (cycled over the six tasks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance-scale", type=float, default=4.5)
    ap.add_argument("--grid", type=Path, default=None, help="save a PNG grid of the generated images")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = ToyWorldPipeline.from_pretrained(args.weights)
    pipe.set_progress_bar_config(disable=True)
    metadata = prompts("geneval", args.n, args.seed)
    images = generate(pipe, metadata, args.seed, steps=args.steps, guidance_scale=args.guidance_scale)
    scores = geneval_scores(images, metadata)
    extractor = load_feature_extractor(args.weights / "features")
    # the reference: ground truth for 10x as many prompts of the same mix (another seed)
    scores["fid"] = fid(images, extractor, prompt_reference_images("geneval", 10 * args.n, args.seed + 1))
    if args.grid:
        save_grid(images, args.grid)
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
