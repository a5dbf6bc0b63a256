"""The paper's metrics in the toy world, as eval metrics (plugged in by conf/metrics/*/toyworld.yaml).

- FID (`ToyFID`): skrr.eval.fid.FID with the toy feature network instead of Inception, projected on the
  top 32 principal axes of the reference (so a few hundred images suffice), against exact renders of
  the ground-truth scenes of the same prompt mix.
- DreamSim's role (`ToySimilarity`): cosine of centred per-cell feature maps of the dense and the
  pruned image of the same prompt and seed (1 = same image).
- GenEval: skrr.eval.geneval.evaluate.GenEval with `detect.ToyDetector`, which reads colours exactly
  (configured in conf/metrics/geneval/toyworld.yaml; `geneval_scores` here for direct use).
"""
from __future__ import annotations

import numpy as np
import torch

from skrr.errors import InputError
from skrr.eval.fid import FID
from skrr.eval.geneval.evaluate import GenEval
from skrr.eval.images import to_uint8_tensor
from skrr.eval.metrics import Metric

from . import WEIGHTS
from .captions import prompt_scenes, sample_training_example
from .detect import ToyDetector
from .features import FeatureNet
from .scenes import render

FEATURES = WEIGHTS / "features"


class ToyFeatureExtractor(torch.nn.Module):
    """uint8 (N, 3, H, W) -> (N, 256) FeatureNet features; drops into skrr.eval.fid.FID(feature_extractor=...)."""

    def __init__(self, net: FeatureNet):
        super().__init__()
        self.net = net.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 127.5 - 1)

    @torch.no_grad()
    def cell_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.cell_map(x.float() / 127.5 - 1)


def load_feature_extractor(path=FEATURES) -> ToyFeatureExtractor:
    return ToyFeatureExtractor(FeatureNet.from_pretrained(path))


def features(images, extractor: ToyFeatureExtractor, kind: str = "pooled") -> np.ndarray:
    """'pooled' (N, 256); 'cells' (N, 2048) per-cell map for pairwise similarity."""
    # channels-last memory, as these features were first measured with (conv kernels round by layout)
    x = to_uint8_tensor(images).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    fn = extractor if kind == "pooled" else extractor.cell_map
    return torch.cat([fn(b) for b in x.split(256)]).numpy().astype(np.float64)


def reference_images(n: int = 1000, seed: int = 12345) -> np.ndarray:
    """Rendered scenes from the training distribution, uint8 (N, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    return np.stack([render(sample_training_example(rng)[0]) for _ in range(n)])


def prompt_reference_images(task_mix: str = "geneval", n: int = 96, seed: int = 0) -> np.ndarray:
    """Renders of the ground-truth scenes behind `prompts(task_mix, n, seed)`: FID's reference
    for images generated from those prompts (same content distribution, exact pixels)."""
    return np.stack([render(scene) for scene, _ in prompt_scenes(task_mix, n, seed)])


def pairwise_similarity(dense_images, pruned_images, extractor: ToyFeatureExtractor) -> np.ndarray:
    """Per pair cosine similarity (DreamSim's role: 1 = same image) of per-cell feature maps,
    centred on the mean map of rendered scenes so that two unrelated scenes are not similar
    merely because both are mostly black background."""
    a, b = features(dense_images, extractor, "cells"), features(pruned_images, extractor, "cells")
    if a.shape != b.shape:
        raise InputError(f"dense and pruned image sets differ in size: {len(a)} vs {len(b)}")
    centre = features(reference_images(500, seed=54321), extractor, "cells").mean(0)
    a, b = a - centre, b - centre
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


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


class ToyFID(FID):
    """FID of generated images against exact renders of the true scenes of `n` prompts of `task_mix`
    (seed `seed`), in the top `dims` principal axes of their toy features."""

    def __init__(self, task_mix: str = "geneval", n: int = 2000, seed: int = 1, dims: int = 32, batch_size: int = 16):
        renders = to_uint8_tensor(prompt_reference_images(task_mix, int(n), int(seed)))
        extractor = load_feature_extractor()
        with torch.no_grad():
            raw = torch.cat([extractor(b) for b in renders.split(256)]).double().numpy()
        super().__init__(feature_extractor=PrincipalFeatures(extractor, raw, int(dims)), batch_size=batch_size)
        ref = self.features(renders)
        self.reference = {"mu": ref.mean(0), "sigma": np.cov(ref, rowvar=False), "count": len(ref)}

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return False

    @classmethod
    def validate(cls, cfg) -> None:
        """Its reference is built in: nothing to check."""


class ToySimilarity(Metric):
    """Mean pairwise similarity of each image to the dense image of its prompt and seed (dense = 1).
    `item_scores`: each pair's similarity (float64)."""
    higher_is_better = True

    def __init__(self, batch_size: int = 16):
        super().__init__()
        self.extractor, self.batch_size = load_feature_extractor(), batch_size

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return True

    def update(self, images, prompts=None, dense=None) -> None:
        if dense is None:
            raise InputError("the toy similarity compares with the dense images; pass dense=")
        self.item_scores.append(torch.from_numpy(pairwise_similarity(dense, images, self.extractor)))

    def compute(self) -> float:
        if not len(self.item_scores):
            raise InputError("no image pairs were given to the toy similarity metric")
        return float(self.item_tensor().numpy().mean())  # numpy's (pairwise) mean, as the value always was


def geneval_results(images, metadata: list[dict]) -> list[dict]:
    """One {'tag', 'prompt', 'correct', 'reason'} per image: GenEval with the exact detector."""
    return GenEval(detector=ToyDetector(), color_classifier=None).verdicts(images, metadata)


def geneval_scores(images, metadata: list[dict]) -> dict[str, float]:
    """The six task accuracies and overall (their mean), GenEval's summary."""
    metric = GenEval(detector=ToyDetector(), color_classifier=None)
    metric.update(images, metadata)
    return metric.compute()
