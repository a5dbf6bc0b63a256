"""GenEval as a metric: images + metadata -> per-image correctness -> six task accuracies and overall."""
from __future__ import annotations

import torch

from eval.geneval.rules import RuleConfig, score_image, summarize
from eval.images import to_pil_list
from eval.metrics import Metric
from skrr.errors import InputError

IMAGES_PER_PROMPT = 4


def expand_metadata(metadata: list[dict], images_per_prompt: int = IMAGES_PER_PROMPT) -> list[dict]:
    """Flat per-image metadata: image index i belongs to prompt i // images_per_prompt (seed base + i)."""
    if not metadata:
        raise InputError("empty GenEval metadata; load prompts/evaluation_metadata.jsonl or generate_suite()")
    return [m for m in metadata for _ in range(images_per_prompt)]


class GenEval(Metric):
    """update(images, metadata) with one GenEval metadata dict per image; compute() -> task accuracies + overall.

    `detector`: any callable image -> detections (default Mask2Former); color_classifier=None when the
    detector sets Detection.color itself (the toy world's exact one). The rule thresholds are RuleConfig's.
    `resample`: the unit of the bootstrap interval: "prompt" (a prompt's images resample together: how
    far the score would move on other prompts) or "image" (the prompts are the population, as when a
    set enumerates its whole prompt language: only the seeds vary)."""
    prompt_set = "geneval"

    def __init__(self, detector=None, color_classifier="auto", device: str | torch.device = "cpu", tiny: bool = False,
                 detector_name: str | None = None, clip_model: str = "ViT-L-14-quickgelu",
                 clip_pretrained: str | None = "openai", batch_size: int = 1, resample: str = "prompt", **rules):
        from eval.geneval.detector import MASK2FORMER, CLIPColorClassifier, Mask2FormerDetector

        self.detector = detector or Mask2FormerDetector(detector_name or MASK2FORMER, device=device, tiny=tiny)
        self.color_classifier = color_classifier
        if color_classifier == "auto":
            self.color_classifier = CLIPColorClassifier(clip_model, clip_pretrained, device=device, tiny=tiny)
        if resample not in ("prompt", "image"):
            raise InputError(f"GenEval resample must be 'prompt' or 'image', got {resample!r}")
        self.rules, self.batch_size, self.resample = RuleConfig(**rules), batch_size, resample
        self.results: list[dict] = []

    def update(self, images, metadata: list[dict], dense=None) -> None:
        pils = to_pil_list(images)
        if len(pils) != len(metadata):
            raise InputError(f"GenEval got {len(pils)} images but {len(metadata)} metadata rows; pass one per image")
        for image, meta in zip(pils, metadata):
            detections = self.detector(image)
            color_fn = self.color_classifier.color_fn(image) if self.color_classifier is not None else None
            correct, reason = score_image(meta, detections, color_fn, self.rules)
            self.results.append({"tag": meta["tag"], "prompt": meta["prompt"], "correct": correct, "reason": reason})

    def compute(self) -> dict[str, float]:
        return summarize(self.results)

    def reset(self) -> None:
        self.results = []
