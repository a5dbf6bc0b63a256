"""Tiny random-weight backbones for offline tests and the smoke config, built through the real classes."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

TINY_CLIP = "skrr-tiny-clip"
_TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_tiny_open_clip() -> str:
    """Register a tiny open_clip config (open_clip ships its BPE vocabulary) and return its name."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="skrr-open-clip-"))
        (folder / f"{TINY_CLIP}.json").write_text(json.dumps(_TINY_CLIP_CONFIG))
        open_clip.add_model_config(folder)
    return TINY_CLIP


class TinyFeatureNet(torch.nn.Module):
    """A small conv net mapping uint8 or 0..255 float images (N,3,H,W) to (N,dim) features."""

    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, dim, 5, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))
