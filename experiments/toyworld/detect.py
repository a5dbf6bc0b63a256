"""The toy world's exact detector: colour segmentation + template matching of the rendered shapes.

On a rendered scene it recovers every object exactly (box, mask, shape, colour, score 1.0). On a
generated image, a detection's score is the IoU of its pixels with the best-matching shape stamp
(best over +-1 px shifts), so a smudge scores low and GenEval's score thresholds mean "how clean".
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from skrr.eval.geneval.rules import Detection
from skrr.eval.images import to_uint8_tensor

from .scenes import PALETTE, SHAPE_MASKS

FOREGROUND = 80  # a pixel is an object pixel if its brightest channel exceeds this (background is 0)
MIN_AREA = 6  # components smaller than this are sampler speckle, not objects
_COLOR_NAMES = list(PALETTE)
_COLOR_VALUES = np.array([PALETTE[c] for c in _COLOR_NAMES], float)


def _shape_scores(mask: np.ndarray) -> dict[str, float]:
    """IoU of a component (cropped to its box) with each 6x6 stamp, best over small shifts."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    size = 10  # canvas big enough for a 6x6 stamp shifted by +-2 and blobs up to 10 px
    if max(crop.shape) > size:
        return {name: 0.0 for name in SHAPE_MASKS}
    canvas = np.zeros((size, size), bool)
    oy, ox = (size - crop.shape[0]) // 2, (size - crop.shape[1]) // 2
    canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    scores = {}
    for name, stamp in SHAPE_MASKS.items():
        sy, sx = np.nonzero(stamp)
        tight = stamp[sy.min():sy.max() + 1, sx.min():sx.max() + 1]
        best = 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ty, tx = (size - tight.shape[0]) // 2 + dy, (size - tight.shape[1]) // 2 + dx
                placed = np.zeros_like(canvas)
                placed[ty:ty + tight.shape[0], tx:tx + tight.shape[1]] = tight
                best = max(best, (placed & canvas).sum() / (placed | canvas).sum())
        scores[name] = float(best)
    return scores


def detect(image) -> list[Detection]:
    """Detections (label = shape, colour = nearest palette colour) in an RGB image (uint8, or float in [0, 1])."""
    img = to_uint8_tensor([image])[0].permute(1, 2, 0).numpy()
    foreground = img.max(axis=2) > FOREGROUND
    labels, n = ndimage.label(foreground, structure=np.ones((3, 3)))  # 8-connected: the ring is
    detections = []
    for k in range(1, n + 1):
        mask = labels == k
        if mask.sum() < MIN_AREA:
            continue
        scores = _shape_scores(mask)
        label = max(scores, key=scores.get)
        mean_rgb = img[mask].astype(float).mean(axis=0)
        color = _COLOR_NAMES[int(np.argmin(((_COLOR_VALUES - mean_rgb) ** 2).sum(axis=1)))]
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        detections.append(Detection(label=label, score=scores[label], box=box, mask=mask, color=color))
    return detections


class ToyDetector:
    """Callable detector for skrr.eval.geneval.evaluate.GenEval(detector=ToyDetector(), color_classifier=None)."""

    def __call__(self, image) -> list[Detection]:
        return detect(image)
