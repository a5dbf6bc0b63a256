"""Calibration prompts and the dense targets f_dense(C), f_dense(null), cached on disk.

The prompts come from a source of skrr.prompts.sources (a file, a Hugging Face dataset, COCO, the
offline generator or a plug-in). Dense targets are keyed by model + feeding + prompt content, so
every method and every sweep point reuses them.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from skrr.config.legacy import key_names
from skrr.encoders.view import to_sub_blocks
from skrr.errors import InputError
from skrr.hub.atomic import atomic_path
from skrr.models.tiny import cache_root
from skrr.search.compute import Forward
from skrr.search.finite import check_finite

NULL_PROMPT = ""  # what classifier-free guidance encodes as the unconditional prompt
MIN_TOKEN_ROWS = 8
TARGETS_LIKELY = ("NaN/inf in the model's encoder or projection weights, or method.compute_dtype / model.dtype "
                  "(float16/bfloat16 overflow: try float32)")


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
    batch_size: int = 8  # the targets were computed in `encoder_batches(tokens, batch_size, length_buckets)`:
    length_buckets: bool = True  # the search feeds the encoder the same batches, so D(dense) is exactly 0
    compute_dtype: torch.dtype | None = None  # and computes in this dtype (None: the model's)


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


def _key(text_side, prompts: list[str], projection: bool, feed: dict) -> str:
    cfg = text_side.cfg
    conf = OmegaConf.to_container(cfg, resolve=True)
    ident = {k: conf.get(k) for k in
             ("name", "pretrained", "text_encoder", "projection", "max_length", "attention_mask", "clean_caption")}
    # how a decoder-only pipeline is fed (only where set, so other models keep their cache keys)
    ident.update({k: conf[k] for k in ("hidden_state", "readout", "complex_human_instruction", "system_prompt")
                  if k in conf})
    ident = key_names(ident)  # a `pkg:` path under its pre-re-layout name: caches written then stay valid
    fingerprint = weights_fingerprint(text_side.encoder, text_side.projection)
    h = hashlib.sha256(json.dumps([ident, projection, prompts, fingerprint, feed], sort_keys=True).encode())
    return h.hexdigest()[:20]


def token_batches(tokens: dict, batch_size: int, device=None):
    """Row batches of tokenized prompts: dicts of input_ids, attention_mask (None when the pipeline
    passes no mask) and attend, moved to `device` if given."""
    mask = tokens["attention_mask"]
    for s in range(0, tokens["input_ids"].shape[0], batch_size):
        rows = {"input_ids": tokens["input_ids"][s:s + batch_size], "attend": tokens["attend"][s:s + batch_size],
                "attention_mask": None if mask is None else mask[s:s + batch_size]}
        yield rows if device is None else {k: None if v is None else v.to(device) for k, v in rows.items()}


def encoder_batches(tokens: dict, batch_size: int, length_buckets: bool = True) -> list[dict]:
    """The row batches the search feeds the encoder, each with `rows` (its indices into `tokens`).

    Where the pipeline passes a mask, padding changes no real token's output (masked keys get
    -inf, and T5's relative position bias depends only on distances), and D ignores it: rows are
    sorted by real length, longest first, and each batch is cut to its longest real prompt.
    Exact up to float rounding. Without a mask (SD3, FLUX: their denoisers read the padding)
    rows keep their order and every position."""
    n = tokens["input_ids"].shape[0]
    mask = tokens["attention_mask"]
    if mask is None or not length_buckets:
        order, lengths = torch.arange(n), torch.full((n,), tokens["input_ids"].shape[1])
    else:  # right-padded: the real length is one past the last real or attended position (FLUX.2's
        # denoiser attends its padding too: nothing is cut there)
        positions = torch.arange(1, mask.shape[1] + 1)
        lengths = ((mask.bool() | tokens["attend"].bool()) * positions).amax(dim=1)
        order = torch.tensor(sorted(range(n), key=lambda r: (-int(lengths[r]), r)))
    batches = []
    for s in range(0, n, batch_size):
        rows = order[s:s + batch_size]
        # at least MIN_TOKEN_ROWS rows per matrix product: CPU BLAS rounds products of < 4 rows
        # differently from a stacked batch's, and the prefix cache stacks batches
        cut = min(max(int(lengths[rows].max()), -(-MIN_TOKEN_ROWS // len(rows))), tokens["input_ids"].shape[1])
        batches.append({"rows": rows, **{k: None if v is None else v[rows, :cut] for k, v in tokens.items()}})
    return batches


@torch.no_grad()
def embed(text_side, tokens: dict, projection: bool, batch_size: int, device, length_buckets: bool = True,
          compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """f = proj(E(c)) (or E(c)) for all rows, fp32 on CPU, computed in `encoder_batches` (positions
    past a batch's cut stay 0: nothing reads them)."""
    forward, out = Forward(text_side, projection, compute_dtype), None
    for b in encoder_batches(tokens, batch_size, length_buckets):
        mask = None if b["attention_mask"] is None else b["attention_mask"].to(device)
        f = forward(b["input_ids"].to(device), mask)
        if out is None:
            out = torch.zeros(*tokens["input_ids"].shape, f.shape[-1])
        out[b["rows"], :f.shape[1]] = f.cpu()
    return out


def build_calibration(text_side, prompts: list[str], projection: bool = True, batch_size: int = 8,
                      device="cpu", cache_dir: str | os.PathLike | None = None,
                      length_buckets: bool = True, compute_dtype: torch.dtype | None = None,
                      mmap: bool = False) -> Calibration:
    """Tokenize as the pipeline does and compute (or load cached) dense targets. `mmap` maps a
    cached file instead of reading it: a search rank then reads only its own batches' rows."""
    if not prompts:
        raise InputError("calibration prompt set is empty")
    to_sub_blocks(text_side.encoder)  # in sub-block form before the fingerprint: its names change
    feed = {"batch_size": batch_size, "length_buckets": length_buckets, "compute_dtype": compute_dtype}
    key = _key(text_side, prompts, projection, {**feed, "compute_dtype": str(compute_dtype)})
    path = Path(cache_dir or cache_root() / "calibration") / f"{text_side.cfg.name}-{key}.pt"
    tokens, null_tokens = text_side.tokenize(prompts), text_side.tokenize([NULL_PROMPT], negative=True)
    cached = _load_cache(path, prompts, mmap)
    if cached is not None:
        return Calibration(prompts, tokens, null_tokens, cached["target"], cached["null_target"], key, projection, **feed)
    target = embed(text_side, tokens, projection, batch_size, device, length_buckets, compute_dtype)
    null_target = embed(text_side, null_tokens, projection, 1, device, length_buckets, compute_dtype)
    check_finite([target, null_target], "the calibration targets f_dense(C), f_dense(null)", TARGETS_LIKELY)
    _save_cache({"target": target, "null_target": null_target, "prompts": prompts}, path)
    return Calibration(prompts, tokens, null_tokens, target, null_target, key, projection, **feed)


def _load_cache(path: Path, prompts: list[str], mmap: bool = False) -> dict | None:
    """The cached targets, or None when there are none or the file is damaged (then they are re-made)."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", mmap=mmap)
        if cached["prompts"] != prompts or cached["target"].shape[0] != len(prompts):
            raise InputError("it holds other prompts")
        return cached
    except Exception as e:  # a damaged cache costs one re-computation, never the run
        warnings.warn(f"calibration cache {path} is unreadable ({type(e).__name__}: {e}); computing it again", stacklevel=2)
        return None


def _save_cache(obj: dict, path: Path) -> None:
    """Written beside `path`, flushed to disk, then renamed: a process killed at any point leaves
    either no cache or a whole one (a stray `.<name>.*` temporary is never read)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
