"""Toy scenes: coloured shapes on a 4x4 grid of 8x8 cells, rendered exactly to 32x32 RGB.

A cell holds at most one object, drawn inside the cell's central 6x6 box, so objects never
touch and a patch-8 denoiser sees one cell per token. Rendering is a pure function of the
scene: no randomness, no anti-aliasing, so the detector can recover the scene exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skrr.errors import InputError
from skrr.eval.geneval.rules import relative_position

IMAGE_SIZE = 32
CELL = 8
GRID = IMAGE_SIZE // CELL  # 4 x 4 cells
BACKGROUND = (0, 0, 0)

# Well-separated colours (black is the background, so it is not an object colour).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 240),
    "yellow": (240, 230, 40),
    "purple": (160, 40, 220),
    "white": (245, 245, 245),
}
COLORS = tuple(PALETTE)
# Chosen so that no two 6x6 stamps overlap by more than IoU 0.5 (a disc and a square would
# share 89% of their pixels at this size, too close for an unambiguous benchmark).
SHAPES = ("ring", "square", "triangle", "cross")
PLURALS = {"ring": "rings", "square": "squares", "triangle": "triangles", "cross": "crosses"}


def _shape_masks() -> dict[str, np.ndarray]:
    """6x6 boolean masks of each shape (the exact stamps the renderer uses)."""
    yy, xx = np.mgrid[0:6, 0:6] + 0.5  # pixel centres
    disc = (xx - 3) ** 2 + (yy - 3) ** 2 <= 3.0 ** 2 + 0.3
    centre = (np.abs(xx - 3) < 2) & (np.abs(yy - 3) < 2)
    masks = {
        "ring": disc & ~centre,  # 16 px, 8-connected
        "square": np.ones((6, 6), bool),
        "triangle": np.abs(xx - 3) <= yy / 2 + 0.01,  # apex at the top, base on the bottom row
        "cross": (np.abs(xx - 3) < 1) | (np.abs(yy - 3) < 1),  # a plus sign, 2 px bars
    }
    return masks


SHAPE_MASKS = _shape_masks()


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    row: int  # 0 = top
    col: int  # 0 = left

    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the drawn pixels' bounding box, x1/y1 exclusive."""
        m = SHAPE_MASKS[self.shape]
        ys, xs = np.nonzero(m)
        x0, y0 = self.col * CELL + 1, self.row * CELL + 1
        return (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]

    def __post_init__(self):
        cells = [(o.row, o.col) for o in self.objects]
        if len(set(cells)) != len(cells):
            raise InputError(f"two objects share a cell in {self.objects}; give each object its own cell")
        for o in self.objects:
            if o.shape not in SHAPES or o.color not in PALETTE or not (0 <= o.row < GRID and 0 <= o.col < GRID):
                raise InputError(f"bad object {o}; shapes {SHAPES}, colours {COLORS}, cells 0..{GRID - 1}")


def render(scene: Scene) -> np.ndarray:
    """The scene as a (32, 32, 3) uint8 image."""
    img = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    img[:] = BACKGROUND
    for o in scene.objects:
        y0, x0 = o.row * CELL + 1, o.col * CELL + 1
        patch = img[y0:y0 + 6, x0:x0 + 6]
        patch[SHAPE_MASKS[o.shape]] = PALETTE[o.color]
    return img


def relation(a: Obj, b: Obj, threshold: float = 0.1) -> set[str]:
    """GenEval's relative position of a with respect to b (its official rule on boxes)."""
    return relative_position(a.box(), b.box(), threshold)
