"""GenEval as a metric: images + metadata -> per-image correctness -> six task accuracies and overall."""
from __future__ import annotations

import torch
from torchmetrics.utilities import dim_zero_cat

from skrr.errors import ConfigError, InputError
from skrr.eval.geneval.rules import TASKS, RuleConfig, score_image, summarize
from skrr.eval.images import to_pil_list
from skrr.eval.metrics import Metric

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
    set enumerates its whole prompt language: only the seeds vary).

    States: `item_scores` (1.0 correct / 0.0 wrong, float64) and `item_strata` (the image's task, an
    index into TASKS), both "cat". The verdicts' reasons are text, which no state can hold:
    `verdicts(images, metadata)` returns them without touching the states."""
    prompt_set = "geneval"
    higher_is_better = True
    strata_names = tuple(TASKS)

    def __init__(self, detector=None, color_classifier="auto", device: str | torch.device = "cpu", tiny: bool = False,
                 detector_name: str | None = None, clip_model: str = "ViT-L-14-quickgelu",
                 clip_pretrained: str | None = "openai", batch_size: int = 1, resample: str = "prompt",
                 threshold: float = RuleConfig.threshold, counting_threshold: float = RuleConfig.counting_threshold,
                 max_objects: int = RuleConfig.max_objects, max_overlap: float = RuleConfig.max_overlap,
                 position_threshold: float = RuleConfig.position_threshold):
        from skrr.eval.geneval.detector import MASK2FORMER, CLIPColorClassifier, Mask2FormerDetector

        super().__init__()
        if resample not in ("prompt", "image"):
            raise ConfigError("resample", f"must be 'prompt' or 'image', got {resample!r}")
        self.detector = detector or Mask2FormerDetector(detector_name or MASK2FORMER, device=device, tiny=tiny)
        self.color_classifier = color_classifier
        if color_classifier == "auto":
            self.color_classifier = CLIPColorClassifier(clip_model, clip_pretrained, device=device, tiny=tiny)
        self.rules = RuleConfig(threshold, counting_threshold, max_objects, max_overlap, position_threshold)
        self.batch_size, self.resample = batch_size, resample
        self.add_state("item_strata", [], dist_reduce_fx="cat")

    def verdicts(self, images, metadata: list[dict]) -> list[dict]:
        """One {'tag', 'prompt', 'correct', 'reason'} per image (the states are left alone)."""
        pils = to_pil_list(images)
        if len(pils) != len(metadata):
            raise InputError(f"GenEval got {len(pils)} images but {len(metadata)} metadata rows; pass one per image")
        out = []
        for image, meta in zip(pils, metadata):
            detections = self.detector(image)
            color_fn = self.color_classifier.color_fn(image) if self.color_classifier is not None else None
            correct, reason = score_image(meta, detections, color_fn, self.rules)
            out.append({"tag": meta["tag"], "prompt": meta["prompt"], "correct": correct, "reason": reason})
        return out

    def update(self, images, metadata: list[dict], dense=None) -> None:
        verdicts = self.verdicts(images, metadata)
        unknown = sorted({v["tag"] for v in verdicts} - set(TASKS))
        if unknown:
            raise InputError(f"GenEval metadata has unknown tags {unknown}; GenEval's tasks are {TASKS}")
        self.item_scores.append(torch.tensor([float(v["correct"]) for v in verdicts], dtype=torch.float64))
        self.item_strata.append(torch.tensor([TASKS.index(v["tag"]) for v in verdicts], dtype=torch.long))

    def compute(self) -> dict[str, float]:
        strata = dim_zero_cat(self.item_strata).tolist() if len(self.item_strata) else []
        return summarize([{"tag": TASKS[t], "correct": bool(c)} for t, c in zip(strata, self.item_tensor().tolist())])
