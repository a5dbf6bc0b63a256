"""The toy world: a CPU-scale trained text-to-image testbed (shapes, colours, counts, positions).

A trained T5 encoder, a PixArt denoiser reading it, and an exact GenEval-style benchmark, so the
whole Skrr study runs for real on a laptop. Weights ship in `weights/` (diffusers layout).
"""
from pathlib import Path

from .captions import TASKS, calibration_prompts, prompts
from .scenes import COLORS, SHAPES, Obj, Scene, render

WEIGHTS = Path(__file__).parent / "weights"  # diffusers layout + features/ (the FID/similarity network)

__all__ = ["TASKS", "COLORS", "SHAPES", "Obj", "Scene", "render", "prompts", "calibration_prompts", "WEIGHTS"]
