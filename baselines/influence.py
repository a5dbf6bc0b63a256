"""ShortGPT's Block Influence, both ways (skrr.baselines.shortgpt.ShortGPT's `bi`), and the one-shot
removal of the least influential whole blocks."""
from __future__ import annotations

import logging

import torch

from skrr.baselines.common import blocks_skip, maybe_reuse
from skrr.encoders.view import find_sub_block_encoder
from skrr.plan import Plan, sparsity
from skrr.search import distributed
from skrr.search.calibration import token_batches

log = logging.getLogger("skrr.baselines.shortgpt")  # the name its log lines have always carried


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


def published_influence(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """ShortGPT's `block_influence` (short_hf.py, angular=False), one value per position: 1 - cos,
    a zero vector's NaN cosine taken as 0.5 as its code does."""
    d = x_in.shape[-1]
    x_in, x_out = x_in.reshape(-1, d), x_out.reshape(-1, d)
    sim = (x_in * x_out).sum(-1) / (x_in.norm(dim=-1) * x_out.norm(dim=-1))
    return 1 - sim.nan_to_num(nan=0.5)


@torch.no_grad()
def reference_block_influence(enc, tokens: dict, batch_size: int = 8, device="cpu") -> list[float]:
    """BI as ShortGPT's `compute_bi` computes it from `output_hidden_states`: every position of
    every batch, padding included, summed (not averaged); the last block's output is the last
    hidden state, after the final norm (`enc.finish`). Batch composition therefore matters: the
    padding a prompt gets depends on the longest prompt beside it."""
    num_blocks = len(enc) // 2
    batches = list(token_batches(tokens, batch_size))
    per_batch = torch.zeros(len(batches), num_blocks, dtype=torch.float64)
    for i in distributed.mine(len(batches)):
        b = {k: None if v is None else v.to(device) for k, v in batches[i].items()}
        h, c = enc.prepare(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        for blk in range(num_blocks):
            x_out = enc.run(h, c, 2 * blk, 2 * blk + 2)
            seen = enc.finish(x_out, c) if blk == num_blocks - 1 else x_out  # hidden_states[-1] is normed
            per_batch[i, blk] = published_influence(h.float(), seen.float()).double().sum()
            h = x_out
    return distributed.gather_batches(per_batch).sum(0).tolist()  # batch order: the same for any number of ranks


INFLUENCE = {"raw": block_influence, "reference": reference_block_influence}


def remove_least_influential(method, ctx, targets: list[float]) -> list[Plan]:
    """ShortGPT's plans (skrr.baselines.shortgpt.ShortGPT `method`'s settings): whole blocks in
    rising BI order until each target is met."""
    enc = find_sub_block_encoder(ctx.text_side.encoder)
    bi = INFLUENCE[method.bi](enc, ctx.calib.tokens, method.batch_size, ctx.device)
    order = sorted(range(len(bi)), key=lambda b: (bi[b], b))  # least influential first
    log.info("block influence (%s): %s", method.bi, " ".join(f"{b}:{v:.4g}" for b, v in enumerate(bi)))
    plans = []
    for t in targets:
        blocks = []
        for b in order:
            if sparsity(ctx.sub_blocks, blocks_skip(blocks), ctx.total) >= t:
                break
            blocks.append(b)
        skip = blocks_skip(blocks)
        reuse, reuse_d = maybe_reuse(ctx, method, skip)
        plans.append(ctx.plan(skip, method, reuse, target=t, bi=bi, removed_blocks=blocks, reuse_d=reuse_d))
    return plans
