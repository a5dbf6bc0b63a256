"""Conditioning a denoiser receives through more than a per-token projection: LTX-2's text connectors.

LTX-2 hands its denoiser neither the encoder's states nor a per-token projection of them: the
pipeline's `connectors` normalise each prompt's read states over its real tokens (a masked mean and
range per layer), project them, and run a 1-D transformer per modality (video, audio) whose learned
registers take the padding's places; the denoiser then applies its caption projections. D is taken on
that, so the module reads the attention mask (`reads_mask`), which skrr.search.compute passes.
"""
from __future__ import annotations

import torch
from torch import nn


class LTX2Conditioning(nn.Module):
    """connectors(states, mask) -> (video, audio), each through the denoiser's caption projection
    (LTX-2.0; LTX-2.3's connectors project per modality themselves), side by side per position."""

    reads_mask = True

    def __init__(self, connectors: nn.Module, video_projection: nn.Module | None = None,
                 audio_projection: nn.Module | None = None, padding_side: str = "left"):
        super().__init__()
        self.connectors, self.video_projection, self.audio_projection = connectors, video_projection, audio_projection
        self.padding_side = padding_side

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        video, audio, _ = self.connectors(states, attention_mask, padding_side=self.padding_side)
        if self.video_projection is not None:
            video, audio = self.video_projection(video), self.audio_projection(audio)
        return torch.cat([video, audio], dim=-1)

