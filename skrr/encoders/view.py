"""A text encoder as an ordered list of residual sub-blocks.

`SubBlockEncoder` replaces the transformer stack of a T5 or UMT5 encoder (`T5Stack`, `UMT5Stack`) or a CLIP text
model (`CLIPEncoder`) with a loop over sub-blocks driven by a *schedule*: position i runs the
sub-block `schedule[i]` (itself when dense, another kept one when re-used, nothing when
skipped). Index 2b is block b's attention, 2b+1 its feed-forward.

The loop calls the very attention / FFN modules of transformers, so the dense schedule is
bit-identical to the original model, and a pruned encoder is an ordinary `T5EncoderModel` /
`CLIPTextModel` that drops into a diffusers pipeline.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel, UMT5EncoderModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.t5.modeling_t5 import T5Attention

from skrr.encoders.decoder_only import find_decoder_sub_blocks, to_decoder_sub_blocks, tower
from skrr.encoders.sub_blocks import ATTN, FFN, SubBlock, SubBlockEncoder, _clamp_fp16, count_params  # noqa: F401 (re-exported)
from skrr.errors import Unsupported


class T5AttentionBranch(nn.Module):
    """`T5LayerSelfAttention` (pre-norm, attention, residual) with the position bias passed in."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, h, ctx):
        return _clamp_fp16(self.layer(h, attention_mask=ctx["mask"], position_bias=ctx["bias"])[0])


class T5FFBranch(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, h, ctx):
        return _clamp_fp16(self.layer(h))


class CLIPAttentionBranch(nn.Module):
    def __init__(self, norm: nn.Module, attn: nn.Module):
        super().__init__()
        self.norm, self.attn = norm, attn

    def forward(self, h, ctx):
        return h + self.attn(hidden_states=self.norm(h), attention_mask=ctx["mask"], **ctx["kwargs"])[0]


class CLIPMLPBranch(nn.Module):
    def __init__(self, norm: nn.Module, mlp: nn.Module):
        super().__init__()
        self.norm, self.mlp = norm, mlp

    def forward(self, h, ctx):
        return h + self.mlp(self.norm(h))


class T5SubBlockEncoder(SubBlockEncoder):
    """Drop-in replacement for `T5Stack` (encoder side)."""

    family = "t5"

    def __init__(self, stack: nn.Module):
        branches, kinds, params = [], [], []
        for block in stack.block:
            attn_layer, ff_layer = block.layer[0], block.layer[-1]
            branches += [T5AttentionBranch(attn_layer), T5FFBranch(ff_layer)]
            kinds += [ATTN, FFN]
        # The relative position bias table lives in block 0's attention but every block uses it:
        # move it out so skipping sub-block 0 never deletes it (it is computed once per forward).
        attn0 = stack.block[0].layer[0].SelfAttention
        bias_table = attn0.relative_attention_bias
        del attn0.relative_attention_bias
        attn0.has_relative_attention_bias = False
        params = [count_params(b) for b in branches]
        super().__init__(branches, kinds, params)
        self.config = stack.config
        self.embed_tokens = stack.embed_tokens
        self.relative_attention_bias = bias_table
        self.final_layer_norm = stack.final_layer_norm
        self.dropout = stack.dropout
        self.num_buckets = attn0.relative_attention_num_buckets
        self.max_distance = attn0.relative_attention_max_distance

    def position_bias(self, length: int, device) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.long, device=device)
        buckets = T5Attention._relative_position_bucket(
            pos[None, :] - pos[:, None], bidirectional=True, num_buckets=self.num_buckets, max_distance=self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def prepare(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        bias = self.position_bias(inputs_embeds.shape[1], inputs_embeds.device).to(inputs_embeds.dtype)
        return self.dropout(inputs_embeds), {"mask": mask, "bias": bias}

    def finish(self, h, ctx):
        return self.dropout(self.final_layer_norm(h))

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        h, ctx = self.prepare(input_ids, attention_mask, inputs_embeds)
        return BaseModelOutput(last_hidden_state=self.finish(self.run(h, ctx), ctx))


class UMT5AttentionBranch(nn.Module):
    """`UMT5LayerSelfAttention`: every UMT5 layer holds and computes its own relative position bias."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, h, ctx):
        return _clamp_fp16(self.layer(h, attention_mask=ctx["mask"])[0])


class UMT5SubBlockEncoder(T5SubBlockEncoder):
    """Drop-in replacement for `UMT5Stack` (encoder side: Wan's umT5-XXL). Unlike T5, each layer's
    attention has its own position bias table, which goes with its sub-block."""

    family = "umt5"

    def __init__(self, stack: nn.Module):
        branches, kinds = [], []
        for block in stack.block:
            branches += [UMT5AttentionBranch(block.layer[0]), T5FFBranch(block.layer[-1])]
            kinds += [ATTN, FFN]
        SubBlockEncoder.__init__(self, branches, kinds, [count_params(b) for b in branches])
        self.config = stack.config
        self.embed_tokens = stack.embed_tokens
        self.final_layer_norm = stack.final_layer_norm
        self.dropout = stack.dropout

    def prepare(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return self.dropout(inputs_embeds), {"mask": mask}


class CLIPSubBlockEncoder(SubBlockEncoder):
    """Drop-in replacement for `CLIPEncoder` inside a CLIP text model. Returns the last hidden
    state only: a pruned CLIP has no per-layer `hidden_states`."""

    family = "clip"

    def __init__(self, text_model: nn.Module):
        branches, kinds = [], []
        for layer in text_model.encoder.layers:
            branches += [CLIPAttentionBranch(layer.layer_norm1, layer.self_attn), CLIPMLPBranch(layer.layer_norm2, layer.mlp)]
            kinds += [ATTN, FFN]
        super().__init__(branches, kinds, [count_params(b) for b in branches])
        self.config = text_model.config
        object.__setattr__(self, "_text_model", text_model)  # parent; not a submodule

    def prepare(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        from transformers.masking_utils import create_causal_mask

        tm = self._text_model
        h = tm.embeddings(input_ids=input_ids) if inputs_embeds is None else inputs_embeds
        mask = create_causal_mask(config=tm.config, inputs_embeds=h, attention_mask=attention_mask, past_key_values=None)
        return h, {"mask": mask, "kwargs": {"is_causal": True}}

    def finish(self, h, ctx):
        return self._text_model.final_layer_norm(h)

    def forward(self, inputs_embeds, attention_mask=None, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k == "is_causal"}
        return BaseModelOutput(last_hidden_state=self.run(inputs_embeds, {"mask": attention_mask, "kwargs": kwargs}))


def _clip_text_model(model: nn.Module) -> nn.Module:
    return model.text_model if isinstance(model, CLIPTextModelWithProjection) else model


def to_sub_blocks(model: nn.Module, hidden_state: int | None = None) -> SubBlockEncoder:
    """Put `model` (in place) into sub-block form and return its `SubBlockEncoder`.
    Idempotent; works on the meta device. `hidden_state` (decoder-only models) is the index of the
    hidden state the pipeline reads: -2 makes the view stop before the last layer."""
    decoder = to_decoder_sub_blocks(model, hidden_state)
    if decoder is not None:
        return decoder
    found = find_sub_block_encoder(model)
    if found is not None:
        return found
    if isinstance(model, T5EncoderModel):
        model.encoder = T5SubBlockEncoder(model.encoder)
        return model.encoder
    if isinstance(model, UMT5EncoderModel):
        model.encoder = UMT5SubBlockEncoder(model.encoder)
        return model.encoder
    if isinstance(model, (CLIPTextModel, CLIPTextModelWithProjection)):
        tm = _clip_text_model(model)
        tm.encoder = CLIPSubBlockEncoder(tm)
        return tm.encoder
    raise Unsupported(
        f"skrr prunes T5EncoderModel, UMT5EncoderModel, CLIPTextModel[WithProjection] and decoder-only (Gemma-2, "
        f"Gemma-3, Llama, Mistral, Qwen2, Qwen3, Qwen2.5-VL) text encoders; got {type(model).__name__}")


def find_sub_block_encoder(model: nn.Module) -> SubBlockEncoder | None:
    decoder = find_decoder_sub_blocks(model)
    if decoder is not None:
        return decoder
    if isinstance(model, CLIPTextModelWithProjection):
        model = model.text_model
    enc = getattr(model, "encoder", None)
    return enc if isinstance(enc, SubBlockEncoder) else None


def total_params(model: nn.Module) -> int:
    """All parameters of the encoder as a dense model (the language tower of a vision-language
    model; without a tail the pipeline never reads): the denominator of sparsity."""
    enc = find_sub_block_encoder(model)
    n = sum(p.numel() for p in tower(model).parameters())
    if enc is not None:  # add back what a plan already removed
        present = {int(k) for k in enc.branches}
        n += sum(p for i, p in enumerate(enc.sub_block_params) if i not in present)
    return n


def shipped_params(model: nn.Module) -> int:
    """Parameters of the whole encoder module as its checkpoint holds it: what a plan removed, the
    tail the pipeline never reads and the heads no text-to-image call runs (Mistral3's vision tower,
    an untied LM head) added back to what is there."""
    enc = find_sub_block_encoder(model)
    n = count_params(model)
    if enc is not None:
        present = {int(k) for k in enc.branches}
        n += sum(p for i, p in enumerate(enc.sub_block_params) if i not in present)
        n += getattr(enc, "unused_params", 0) + getattr(enc, "dropped_params", 0)
    return n
