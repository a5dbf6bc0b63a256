"""ShortGPT (arXiv 2403.03853) on a text encoder: Block Influence, one-shot block removal.

BI_b = 1 - mean over attended tokens of cos(x_in, x_out), where x_in is the raw input of block b
(before sub-block 2b) and x_out its raw output (after sub-block 2b+1), computed in fp32 on the
calibration prompts. The lowest-BI whole blocks are removed until each sparsity target is met.
"""
from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from baselines.common import blocks_skip, maybe_reuse
from skrr.calibration import token_batches
from skrr.encoder import find_sub_block_encoder
from skrr.plan import Plan, sparsity

log = logging.getLogger(__name__)


@torch.no_grad()
def block_influence(enc, tokens: dict, batch_size: int = 8, device="cpu") -> list[float]:
    """BI per block of a dense SubBlockEncoder over tokenized prompts (padding excluded via `attend`)."""
    num_blocks = len(enc) // 2
    cos_sum = torch.zeros(num_blocks, dtype=torch.float64)
    count = 0.0
    for b in token_batches(tokens, batch_size, device):
        attend = b["attend"].double()
        h, c = enc.prepare(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        for b in range(num_blocks):
            x_out = enc.run(h, c, 2 * b, 2 * b + 2)
            cos = torch.nn.functional.cosine_similarity(h.float(), x_out.float(), dim=-1)
            cos_sum[b] += (cos.double() * attend).sum()
            h = x_out
        count += float(attend.sum())
    return (1 - cos_sum / count).tolist()


def run(ctx, cfg: DictConfig, targets: list[float]) -> list[Plan]:
    enc = find_sub_block_encoder(ctx.text_side.encoder)
    bi = block_influence(enc, ctx.calib.tokens, int(cfg.get("batch_size", 8)), ctx.device)
    order = sorted(range(len(bi)), key=lambda b: (bi[b], b))  # least influential first
    log.info("block influence: %s", " ".join(f"{b}:{v:.4g}" for b, v in enumerate(bi)))
    plans = []
    for t in targets:
        blocks = []
        for b in order:
            if sparsity(ctx.sub_blocks, blocks_skip(blocks), ctx.total) >= t:
                break
            blocks.append(b)
        skip = blocks_skip(blocks)
        reuse, reuse_d = maybe_reuse(ctx, cfg, skip)
        plans.append(ctx.plan(skip, cfg, reuse, target=t, bi=bi, removed_blocks=blocks, reuse_d=reuse_d))
    return plans
