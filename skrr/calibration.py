"""Calibration prompts and the dense targets f_dense(C), f_dense(null), cached on disk.

Prompts come from a text/JSONL file, a Hugging Face dataset, the toy world, or a built-in
offline generator; they can be filtered by tokenized length (the paper kept long captions
of 150-250 tokens). Dense targets are keyed by model + feeding + prompt content, so every
method and every sweep point reuses them.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from skrr.atomic import atomic_path
from skrr.tiny import _corpus, cache_root

NULL_PROMPT = ""  # what classifier-free guidance encodes as the unconditional prompt


def source_prompts(cfg: DictConfig) -> list[str]:
    src = cfg.source
    if src == "file":
        from eval.prompts import load_prompt_file

        return load_prompt_file(cfg.path, cfg.get("column", "prompt"))
    if src == "hf":
        try:
            import datasets
        except ImportError:
            raise ImportError("calibration.source=hf needs the `datasets` package: pip install datasets") from None
        ds = datasets.load_dataset(cfg.dataset, split=cfg.get("split", "train"))
        return [str(x) for x in ds[cfg.column]]
    if src == "toyworld":
        from experiments import toyworld

        return toyworld.calibration_prompts(int(cfg.pool), int(cfg.seed))
    if src == "builtin":
        return _corpus(int(cfg.pool), int(cfg.seed))
    raise ValueError(f"unknown calibration.source {src!r}; use file, hf, toyworld or builtin")


def select_prompts(prompts: list[str], cfg: DictConfig, token_length=None) -> list[str]:
    """Filter by tokenized length (if bounds are set), then sample `size` with `seed`."""
    lo, hi = cfg.get("min_tokens"), cfg.get("max_tokens")
    if (lo is not None or hi is not None) and token_length is not None:
        prompts = [p for p in prompts if (lo is None or token_length(p) >= lo) and (hi is None or token_length(p) <= hi)]
    if not prompts:
        raise ValueError("no calibration prompts left after filtering; widen calibration.min_tokens/max_tokens")
    size = min(int(cfg.size), len(prompts))
    return random.Random(int(cfg.seed)).sample(prompts, size)


@dataclass
class Calibration:
    """Tokenized calibration prompts and the null prompt, with the dense targets."""
    prompts: list[str]
    tokens: dict  # input_ids, attention_mask (or None), attend (bool)
    null_tokens: dict
    target: torch.Tensor  # f_dense(C): (N, L, D) on CPU, fp32
    null_target: torch.Tensor  # f_dense(null): (1, L, D)
    key: str
    projected: bool = True  # targets are proj(E(c)) rather than E(c)


@torch.no_grad()
def weights_fingerprint(*modules, samples: int = 4099) -> list:
    """Name, shape, dtype and a hash of a sample of every tensor: its first and last rows plus
    `samples` elements at a fixed stride. Retraining, fine-tuning or swapping a checkpoint changes
    these; reading them costs well under a second even for T5-XXL (no pass over all weights)."""
    out = []
    for m in modules:
        for name, t in m.state_dict().items():
            if not t.is_floating_point():
                continue
            flat = t.detach().reshape(-1)
            row = t.shape[-1] if t.dim() > 1 else flat.numel()
            stride = max(1, flat.numel() // samples)
            sample = torch.cat([flat[:row], flat[-row:], flat[::stride]]).float().cpu()
            digest = hashlib.sha256(sample.numpy().tobytes()).hexdigest()[:16]
            out.append((name, list(t.shape), str(t.dtype), digest))
    return out


def _key(text_side, prompts: list[str], projection: bool) -> str:
    cfg = text_side.cfg
    conf = OmegaConf.to_container(cfg, resolve=True)
    ident = {k: conf.get(k) for k in
             ("name", "pretrained", "text_encoder", "projection", "max_length", "attention_mask", "clean_caption")}
    # how a decoder-only pipeline is fed (only where set, so other models keep their cache keys)
    ident.update({k: conf[k] for k in ("hidden_state", "complex_human_instruction", "system_prompt") if k in conf})
    fingerprint = weights_fingerprint(text_side.encoder, text_side.projection)
    h = hashlib.sha256(json.dumps([ident, projection, prompts, fingerprint], sort_keys=True).encode())
    return h.hexdigest()[:20]


def token_batches(tokens: dict, batch_size: int, device=None):
    """Row batches of tokenized prompts: dicts of input_ids, attention_mask (None when the pipeline
    passes no mask) and attend, moved to `device` if given."""
    mask = tokens["attention_mask"]
    for s in range(0, tokens["input_ids"].shape[0], batch_size):
        rows = {"input_ids": tokens["input_ids"][s:s + batch_size], "attend": tokens["attend"][s:s + batch_size],
                "attention_mask": None if mask is None else mask[s:s + batch_size]}
        yield rows if device is None else {k: None if v is None else v.to(device) for k, v in rows.items()}


@torch.no_grad()
def embed(text_side, tokens: dict, projection: bool, batch_size: int, device) -> torch.Tensor:
    """f = proj(E(c)) (or E(c)) for all rows, fp32 on CPU."""
    out = []
    for b in token_batches(tokens, batch_size, device):
        f = text_side.encode(b["input_ids"], b["attention_mask"])
        if projection:
            f = text_side.projection(f.to(next(text_side.projection.parameters()).dtype))
        out.append(f.float().cpu())
    return torch.cat(out)


def build_calibration(text_side, prompts: list[str], projection: bool = True, batch_size: int = 8,
                      device="cpu", cache_dir: str | os.PathLike | None = None) -> Calibration:
    """Tokenize as the pipeline does and compute (or load cached) dense targets."""
    if not prompts:
        raise ValueError("calibration prompt set is empty")
    key = _key(text_side, prompts, projection)
    path = Path(cache_dir or cache_root() / "calibration") / f"{text_side.cfg.name}-{key}.pt"
    tokens, null_tokens = text_side.tokenize(prompts), text_side.tokenize([NULL_PROMPT], negative=True)
    if path.is_file():
        cached = torch.load(path, map_location="cpu")
        return Calibration(prompts, tokens, null_tokens, cached["target"], cached["null_target"], key, projection)
    target = embed(text_side, tokens, projection, batch_size, device)
    null_target = embed(text_side, null_tokens, projection, 1, device)
    with atomic_path(path) as tmp:
        torch.save({"target": target, "null_target": null_target, "prompts": prompts}, tmp)
    return Calibration(prompts, tokens, null_tokens, target, null_target, key, projection)
