"""ShortGPT (arXiv 2403.03853) on a text encoder: Block Influence, one-shot block removal.

BI_b = 1 - mean over attended tokens of cos(x_in, x_out), where x_in is the raw input of block b
(before sub-block 2b) and x_out its raw output (after sub-block 2b+1), computed in fp32 on the
calibration prompts. The lowest-BI whole blocks are removed until each sparsity target is met.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from skrr.baselines.common import blocks_skip, maybe_reuse
from skrr.encoders.view import find_sub_block_encoder
from skrr.methods import Measured
from skrr.plan import Plan, sparsity
from skrr.search import distributed
from skrr.search.calibration import token_batches

log = logging.getLogger(__name__)


@torch.no_grad()
def block_influence(enc, tokens: dict, batch_size: int = 8, device="cpu") -> list[float]:
    """BI per block of a dense SubBlockEncoder over tokenized prompts (padding excluded via `attend`).
    Under torchrun/srun each rank runs its share of the batches; the per-batch sums are gathered
    and added in batch order, so BI is the same for any number of ranks."""
    num_blocks = len(enc) // 2
    batches = list(token_batches(tokens, batch_size))
    per_batch = torch.zeros(len(batches), num_blocks + 1, dtype=torch.float64)  # cos sum per block, tokens
    for i in distributed.mine(len(batches)):
        b = {k: None if v is None else v.to(device) for k, v in batches[i].items()}
        attend = b["attend"].double()
        h, c = enc.prepare(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        for blk in range(num_blocks):
            x_out = enc.run(h, c, 2 * blk, 2 * blk + 2)
            cos = torch.nn.functional.cosine_similarity(h.float(), x_out.float(), dim=-1)
            per_batch[i, blk] = (cos.double() * attend).sum()
            h = x_out
        per_batch[i, -1] = attend.sum()
    cos_sum, count = torch.zeros(num_blocks, dtype=torch.float64), 0.0
    for row in distributed.gather_batches(per_batch):  # in batch order
        cos_sum += row[:-1]
        count += float(row[-1])
    return (1 - cos_sum / count).tolist()


@dataclass(kw_only=True)
class ShortGPT(Measured):
    """Remove the whole blocks of lowest Block Influence, in one shot. D's settings (`metric`,
    `projection`, `null_term`) serve only the optional Re-use phase and the calibration targets."""
    reuse: bool  # apply Skrr's Re-use phase to the skipped positions

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        enc = find_sub_block_encoder(ctx.text_side.encoder)
        bi = block_influence(enc, ctx.calib.tokens, self.batch_size, ctx.device)
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
            reuse, reuse_d = maybe_reuse(ctx, self, skip)
            plans.append(ctx.plan(skip, self, reuse, target=t, bi=bi, removed_blocks=blocks, reuse_d=reuse_d))
        return plans
