"""The paper's metrics in the toy world, behind eval's metric interface (`backend: toyworld`).

- FID: eval.fid.FID with the toy feature network instead of Inception (projected on the top 32
  principal axes of the reference, so a few hundred images suffice), against exact renders of
  the ground-truth scenes of the same prompt mix.
- DreamSim's role: cosine of centred per-cell feature maps of dense vs pruned images (1 = same).
- GenEval: eval.geneval.GenEval with the exact detector (colours are read, not classified).
"""
from __future__ import annotations

import numpy as np
import torch

from experiments.toyworld.evaluate import load_feature_extractor, pairwise_similarity, prompt_reference_images

METRICS = ("fid", "dreamsim", "geneval")


class ToySimilarity:
    """update(dense_images, pruned_images); compute() -> mean pairwise similarity (dense vs itself = 1)."""

    def __init__(self):
        self.extractor = load_feature_extractor()
        self.values: list[np.ndarray] = []

    def update(self, dense_images, pruned_images) -> None:
        self.values.append(pairwise_similarity(dense_images, pruned_images, self.extractor))

    def compute(self) -> float:
        if not self.values:
            raise ValueError("no image pairs were given to the toy similarity metric")
        return float(np.concatenate(self.values).mean())

    def reset(self) -> None:
        self.values = []


class PrincipalFeatures(torch.nn.Module):
    """Toy features projected on the top principal axes of the reference: a few hundred generated
    images give a well-conditioned covariance in 32 dimensions, not in the network's 256."""

    def __init__(self, extractor: torch.nn.Module, reference: np.ndarray, dims: int):
        super().__init__()
        self.extractor = extractor
        mean = reference.mean(0)
        _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("axes", torch.from_numpy(vt[:dims].T.copy()).float())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.extractor(x).float() - self.mean) @ self.axes


def toy_fid(reference: dict):
    """FID of generated images against exact renders of the true scenes of the same prompt mix."""
    from eval.fid import FID

    renders = prompt_reference_images(reference.get("task_mix", "geneval"), int(reference["n"]), int(reference["seed"]))
    renders = torch.from_numpy(renders).permute(0, 3, 1, 2).contiguous()  # uint8 (N,3,H,W)
    extractor = load_feature_extractor()
    with torch.no_grad():
        raw = torch.cat([extractor(b) for b in renders.split(256)]).double().numpy()
    metric = FID(feature_extractor=PrincipalFeatures(extractor, raw, int(reference.get("dims", 32))))
    ref = metric.features(renders)
    metric.reference = {"mu": ref.mean(0), "sigma": np.cov(ref, rowvar=False), "count": len(ref)}
    return metric


def build_metric(name: str, cfg):
    if name not in METRICS:
        raise ValueError(f"the toy world has no {name!r} metric; use {list(METRICS)} (and efficiency)")
    if name == "fid":
        return toy_fid(cfg.reference)
    if name == "dreamsim":
        return ToySimilarity()
    from eval.geneval.evaluate import GenEval
    from experiments.toyworld.detect import ToyDetector

    return GenEval(detector=ToyDetector(), color_classifier=None)
