"""The sub-block view every encoder family shares: a residual stack as an ordered list of
sub-blocks (index 2b is block b's attention, 2b+1 its feed-forward) run by a schedule.

The families live in skrr/encoders/view.py (T5, CLIP) and skrr/encoders/decoder_only.py (Gemma-2, Llama, Qwen2,
Qwen2.5-VL); both build on this module, which imports neither.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ATTN, FFN = "attn", "ffn"


@dataclass(frozen=True)
class SubBlock:
    index: int
    block: int
    kind: str  # ATTN | FFN
    num_params: int  # parameters freed when this sub-block is skipped


def _clamp_fp16(h: torch.Tensor) -> torch.Tensor:
    # T5Block clamps after every sub-layer in fp16 to keep inf out of the residual stream.
    if h.dtype == torch.float16:
        limit = torch.where(torch.isinf(h).any(), torch.finfo(h.dtype).max - 1000, torch.finfo(h.dtype).max)
        h = torch.clamp(h, min=-limit, max=limit)
    return h


def count_params(module: nn.Module) -> int:
    """Parameters of a module, shared (re-used, tied) ones counted once."""
    return sum(p.numel() for p in module.parameters())


class SubBlockEncoder(nn.Module):
    """The sub-block loop. Kept branches live in `branches` (keyed by index, each registered
    once, so re-used weights are shared, not copied); `schedule[i]` is the branch run at
    position i, or None for a skipped one."""

    family: str

    def __init__(self, branches: list[nn.Module], kinds: list[str], params: list[int]):
        super().__init__()
        self.branches = nn.ModuleDict({str(i): b for i, b in enumerate(branches)})
        self.kinds = list(kinds)
        self.sub_block_params = list(params)
        self.schedule: list[int | None] = list(range(len(branches)))

    @property
    def sub_blocks(self) -> list[SubBlock]:
        return [SubBlock(i, i // 2, k, n) for i, (k, n) in enumerate(zip(self.kinds, self.sub_block_params))]

    def __len__(self) -> int:
        return len(self.kinds)

    def run(self, h: torch.Tensor, ctx: dict, start: int = 0, stop: int | None = None, schedule=None) -> torch.Tensor:
        """Run positions [start, stop) of `schedule` (default: this encoder's) on hidden state h."""
        schedule = self.schedule if schedule is None else schedule
        for src in schedule[start:stop]:
            if src is not None:
                h = self.branches[str(src)](h, ctx)
        return h
