"""A small CNN trained on toy images: the toy world's feature network for FID and similarity.

It is trained (experiments/toyworld/train.py) to name each 8x8 cell's shape and colour,
so its pooled features describe what is drawn where; Inception plays this role on photos.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from skrr.errors import MissingFile

from .scenes import COLORS, GRID, SHAPES


class FeatureNet(nn.Module):
    feature_dim = 256

    def __init__(self, width: int = 64):
        super().__init__()
        self.width = width
        self.body = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, padding=1), nn.GELU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.GELU(),  # 16x16
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(),  # 8x8
            nn.Conv2d(width, 128, 3, stride=2, padding=1), nn.GELU(),  # 4x4: one position per cell
        )
        self.shape_head = nn.Conv2d(128, len(SHAPES) + 1, 1)  # + empty
        self.color_head = nn.Conv2d(128, len(COLORS) + 1, 1)  # + none

    def cell_logits(self, x: torch.Tensor):
        h = self.body(x)
        return self.shape_head(h), self.color_head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [-1, 1] -> (B, 256): mean- and max-pooled last feature map."""
        h = self.body(x)
        return torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)

    def cell_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 2048): the 4x4 map of per-cell features, flattened (keeps layout)."""
        return self.body(x).flatten(1)

    def save_pretrained(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), path / "model.safetensors")
        (path / "config.json").write_text(json.dumps({"width": self.width}) + "\n")

    @classmethod
    def from_pretrained(cls, path) -> FeatureNet:
        path = Path(path)
        if not (path / "model.safetensors").exists():
            raise MissingFile(f"no feature network at {path}; train it with experiments/toyworld/train.py")
        net = cls(**json.loads((path / "config.json").read_text()))
        net.load_state_dict(load_file(path / "model.safetensors"))
        return net.eval()


def cell_targets(scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4, 4) class maps: shape index + 1 (0 = empty) and colour index + 1 (0 = none)."""
    shape = torch.zeros(len(scenes), GRID, GRID, dtype=torch.long)
    color = torch.zeros_like(shape)
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            shape[i, o.row, o.col] = SHAPES.index(o.shape) + 1
            color[i, o.row, o.col] = COLORS.index(o.color) + 1
    return shape, color
