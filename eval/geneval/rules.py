"""GenEval's decision rules, mirrored from the official evaluation/evaluate_images.py (djghosh13/geneval).

Pure functions over detections, so any detector (Mask2Former here, the toy world's exact one) feeds
them. Defaults are the official ones: score threshold 0.3 (0.9 for counting), at most 16 objects per
class, overlap exclusion off (max_overlap=1.0), position margin 0.1 of the summed box sizes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from skrr.errors import InputError

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
TASKS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


@dataclass
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    mask: np.ndarray | None = None  # (H, W) bool
    color: str | None = None  # set by exact detectors; otherwise the colour classifier decides


# color_fn(detections, classname) -> one colour name (from COLORS) per detection
ColorFn = Callable[[Sequence[Detection], str], Sequence[str]]


@dataclass(frozen=True)
class RuleConfig:
    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0  # official NMS_THRESHOLD; 1.0 keeps every thresholded box
    position_threshold: float = 0.1


def compute_iou(box_a, box_b) -> float:
    """The official IoU, with its +1 pixel box convention."""
    def area(box):
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)
    inter = area([max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3])])
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0


def relative_position(box_a, box_b, position_threshold: float = 0.1) -> set[str]:
    """Position of A relative to B, after shrinking the offset by a margin of the objects' sizes."""
    boxes = np.array([box_a, box_b], dtype=np.float64)[:, :4].reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - position_threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def group_detections(metadata: dict, detections: Sequence[Detection], cfg: RuleConfig = RuleConfig()
                     ) -> dict[str, list[Detection]]:
    """Per class: score-thresholded, sorted by confidence, capped at max_objects, overlap-excluded."""
    threshold = cfg.counting_threshold if metadata["tag"] == "counting" else cfg.threshold
    grouped: dict[str, list[Detection]] = {}
    for label in dict.fromkeys(d.label for d in detections):
        candidates = [d for d in detections if d.label == label]
        scores = np.array([d.score for d in candidates])
        order = np.argsort(scores)[::-1]  # same ordering (and tie order) as the official code
        order = order[scores[order] > threshold][:cfg.max_objects].tolist()
        kept = []
        while order:
            best = order.pop(0)
            kept.append(candidates[best])
            order = [i for i in order if cfg.max_overlap == 1
                     or compute_iou(candidates[best].box, candidates[i].box) < cfg.max_overlap]
        if kept:
            grouped[label] = kept
    return grouped


def _colors_of(found: list[Detection], classname: str, color_fn: ColorFn | None) -> list[str]:
    missing = [d for d in found if d.color is None]
    if missing and color_fn is None:
        raise InputError("a colour prompt needs detections with .color set or a color_fn (CLIP colour classifier)")
    predicted = iter(color_fn(missing, classname)) if missing else iter(())
    return [d.color if d.color is not None else next(predicted) for d in found]


def score_image(metadata: dict, detections: Sequence[Detection], color_fn: ColorFn | None = None,
                cfg: RuleConfig = RuleConfig()) -> tuple[bool, str]:
    """Is one image correct for its GenEval metadata? Returns (correct, reason); reason is '' when correct.

    'include' clauses combine with AND, 'exclude' clauses with OR; colour and position are judged
    on the most confident objects only (the official rules)."""
    objects = group_detections(metadata, detections, cfg)
    correct = True
    reason: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        classname = req["class"]
        matched = True
        found = objects.get(classname, [])[:req["count"]]
        if len(found) < req["count"]:
            correct = matched = False
            reason.append(f"expected {classname}>={req['count']}, found {len(found)}")
        else:
            if "color" in req:
                colors = _colors_of(found, classname, color_fn)
                if colors.count(req["color"]) < req["count"]:
                    correct = matched = False
                    reason.append(f"expected {req['color']} {classname}>={req['count']}, found "
                                  f"{colors.count(req['color'])} {req['color']}; and "
                                  + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors))
            if "position" in req and matched:
                expected_rel, target_group = req["position"]
                if matched_groups[target_group] is None:
                    correct = matched = False
                    reason.append(f"no target for {classname} to be {expected_rel}")
                else:
                    for obj in found:
                        for target in matched_groups[target_group]:
                            true_rels = relative_position(obj.box, target.box, cfg.position_threshold)
                            if expected_rel not in true_rels:
                                correct = matched = False
                                reason.append(f"expected {classname} {expected_rel} target, found "
                                              f"{' and '.join(true_rels)} target")
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        classname = req["class"]
        if len(objects.get(classname, [])) >= req["count"]:
            correct = False
            reason.append(f"expected {classname}<{req['count']}, found {len(objects[classname])}")
    return correct, "\n".join(reason)


def summarize(results: Sequence[dict]) -> dict[str, float]:
    """Per-task accuracy over images and overall = mean of the task accuracies (official summary).

    Each result needs 'tag' and 'correct'. Only tasks present are averaged, as the official script does."""
    if not results:
        raise InputError("no GenEval results to summarize; score some images first")
    by_task: dict[str, list[bool]] = {}
    for r in results:
        by_task.setdefault(r["tag"], []).append(bool(r["correct"]))
    scores = {tag: float(np.mean(v)) for tag, v in by_task.items()}
    scores["overall"] = float(np.mean(list(scores.values())))
    return scores
