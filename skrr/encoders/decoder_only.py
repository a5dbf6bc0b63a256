"""Decoder-only text encoders (Gemma-2, Llama, Mistral, Qwen2, Qwen3, the language towers of Qwen2.5-VL,
Mistral3 and Gemma-3) as sub-blocks.

Decoder layer b becomes sub-block 2b (every norm of the attention branch, self-attention, residual
add) and 2b+1 (the MLP branch likewise). Gemma-2 and Gemma-3 wrap both branches in pre- and post-norms;
Llama and Qwen2 have a pre-norm only. The rotary embeddings and the causal (and sliding-window) masks
are computed once per forward, so skipping sub-block 0 keeps them; a re-used attention takes the mask
(and, in Gemma-3, the rotary embedding) of its own kind, sliding or full, as it would at home.

The stack module (`Gemma2Model`, `Qwen2_5_VLTextModel`, ...) keeps its class, embeddings and final
norm: its `layers` become the `DecoderSubBlockEncoder` and its forward the sub-block loop, so the
pipeline calls it exactly as before, `output_hidden_states` included.

A pipeline whose deepest read is hidden state -k (Lumina 2 reads the penultimate, FLUX.2 stacks
10, 20 and 30 of 40) never uses the last k-1 layers nor the final norm: the view stops at the
deepest read layer and deletes that tail, whose weights no plan needs to count. `hidden_states`
keeps its stock length with None for the removed tail.

Mistral3 (FLUX.2-dev's encoder) and Gemma-3 (LTX-2's) are vision-language models whose text-to-image
call never runs the vision tower (no pixel_values) and throws the LM head's logits away: the view drops
both (the head becomes `NoLogits`, so the class's own forward still runs and returns empty logits;
Gemma-3's head is tied to the embeddings, so only its work is saved, not its weights). HiDream's
Llama (a LlamaForCausalLM with an untied head) loses its LM head the same way.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast

from skrr.encoders.sub_blocks import ATTN, FFN, SubBlockEncoder, count_params
from skrr.errors import InputError

FULL, SLIDING = "full_attention", "sliding_attention"
HIDDEN_STATE_KEY = "skrr_hidden_state"  # on the model config: which hidden state the pipeline reads


class DecoderAttentionBranch(nn.Module):
    """h + post_norm(attn(pre_norm(h))); post_norm only in Gemma-2."""

    def __init__(self, pre_norm: nn.Module, attn: nn.Module, post_norm: nn.Module | None):
        super().__init__()
        self.pre_norm, self.attn, self.post_norm = pre_norm, attn, post_norm
        self.attention_type = getattr(attn, "layer_type", None) or FULL

    def forward(self, h, ctx):
        masks, rope = ctx["masks"], ctx["rope"]
        if isinstance(rope, dict):  # Gemma-3: local and global layers rotate with their own frequencies
            rope = rope[self.attention_type]
        a = self.attn(hidden_states=self.pre_norm(h), attention_mask=masks.get(self.attention_type, masks[FULL]),
                      position_embeddings=rope, position_ids=ctx["position_ids"])[0]
        return h + (a if self.post_norm is None else self.post_norm(a))


class DecoderMLPBranch(nn.Module):
    def __init__(self, pre_norm: nn.Module, mlp: nn.Module, post_norm: nn.Module | None):
        super().__init__()
        self.pre_norm, self.mlp, self.post_norm = pre_norm, mlp, post_norm

    def forward(self, h, ctx):
        m = self.mlp(self.pre_norm(h))
        return h + (m if self.post_norm is None else self.post_norm(m))


def _branches(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    if hasattr(layer, "pre_feedforward_layernorm"):  # Gemma-2: sandwich norms around both branches
        return (DecoderAttentionBranch(layer.input_layernorm, layer.self_attn, layer.post_attention_layernorm),
                DecoderMLPBranch(layer.pre_feedforward_layernorm, layer.mlp, layer.post_feedforward_layernorm))
    # Llama / Qwen2: `post_attention_layernorm` is the MLP's pre-norm despite its name
    return (DecoderAttentionBranch(layer.input_layernorm, layer.self_attn, None),
            DecoderMLPBranch(layer.post_attention_layernorm, layer.mlp, None))


class DecoderSubBlockEncoder(SubBlockEncoder):
    """Takes the place of `stack.layers`; `stack.forward` becomes `self.stack_forward`."""

    family = "decoder"

    def __init__(self, stack: nn.Module, hidden_state: int = -1):
        num_layers = len(stack.layers)
        used = num_layers + 1 + hidden_state  # hidden_states[i] is the output of layer i-1 (0: embeddings)
        if not 1 <= used <= num_layers:
            raise InputError(f"hidden state {hidden_state} does not exist in a {num_layers}-layer model")
        branches, kinds = [], []
        for layer in list(stack.layers)[:used]:
            branches += _branches(layer)
            kinds += [ATTN, FFN]
        super().__init__(branches, kinds, [count_params(b) for b in branches])
        self.config = stack.config
        self.num_layers, self.used_layers, self.hidden_state = num_layers, used, hidden_state
        object.__setattr__(self, "_stack", stack)  # parent; not a submodule
        # the tail the pipeline never reads (layers after the used one, final norm): per sub-block for
        # `skrr-inspect`'s table, and in all
        self.unread_sub_block_params = [count_params(b) for layer in list(stack.layers)[used:] for b in _branches(layer)]
        self.unused_params = sum(count_params(m) for m in list(stack.layers)[used:])
        self.dropped_params = 0  # modules of the encoder no text-to-image call runs (drop_unused_heads)
        if used < num_layers:
            self.unused_params += count_params(stack.norm)
            del stack.norm  # never reaches the pipeline: free it
        stack.layers = self
        stack.forward = self.stack_forward

    @property
    def uses_final_norm(self) -> bool:
        return self.used_layers == self.num_layers

    def prepare(self, input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None):
        """Embeddings, rotary embeddings and masks, as the stock stack's forward computes them
        (`attention_mask`: 2-D, or the masks by layer type that a wrapper made, as Gemma-3's does)."""
        stack = self._stack
        if inputs_embeds is None:
            inputs_embeds = stack.embed_tokens(input_ids)  # Gemma's embedding scales by sqrt(hidden) itself
        if _is_mrope(stack):  # Qwen2.5-VL: 3-D (temporal, height, width) positions; text-only: arange thrice
            if position_ids is None:  # the same for every row: one row broadcasts (batch-size free ctx)
                position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device).view(1, 1, -1)
                position_ids = position_ids.expand(3, 1, -1)
            elif position_ids.ndim == 2:
                position_ids = position_ids[None].expand(3, position_ids.shape[0], -1)
            text_position_ids = None
            if position_ids.shape[0] == 4:  # packed: text positions first
                text_position_ids, position_ids = position_ids[0], position_ids[1:]
        else:
            if position_ids is None:
                position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device).unsqueeze(0)
            text_position_ids = position_ids
        kw = dict(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                  past_key_values=None, position_ids=text_position_ids)
        sliding_everywhere = type(stack).__name__ == "MistralModel" and self.config.sliding_window is not None
        layer_types = set(getattr(self.config, "layer_types", None) or [])
        if isinstance(attention_mask, dict):
            masks = dict(attention_mask)
        else:
            masks = {FULL: (create_sliding_window_causal_mask if sliding_everywhere else create_causal_mask)(**kw)}
            if SLIDING in layer_types:
                masks[SLIDING] = create_sliding_window_causal_mask(**kw)
        x = inputs_embeds[:1] if position_ids.shape[-2] == 1 else inputs_embeds
        if _rope_by_layer_type(stack):
            rope = {t: stack.rotary_emb(x, position_ids, t) for t in sorted(layer_types)}
        else:
            rope = stack.rotary_emb(x, position_ids)
        return inputs_embeds, {"masks": masks, "rope": rope, "position_ids": text_position_ids}

    def finish(self, h, ctx):
        return self._stack.norm(h) if self.uses_final_norm else h

    def stack_forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                      inputs_embeds=None, use_cache=None, output_hidden_states=None, return_dict=None, **kwargs):
        """The stack's forward: same arguments, same outputs, no KV cache (an encoder needs none)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("You must specify exactly one of input_ids or inputs_embeds")
        if output_hidden_states is None:
            output_hidden_states = bool(getattr(self.config, "output_hidden_states", False))
        h, ctx = self.prepare(input_ids, attention_mask, inputs_embeds, position_ids)
        states = [h]
        for b in range(self.used_layers):
            h = self.run(h, ctx, 2 * b, 2 * b + 2)
            states.append(h)
        out = self.finish(h, ctx)
        hidden_states = None
        if output_hidden_states:
            if self.uses_final_norm:
                states[-1] = out  # as transformers ties the last hidden state to the normed output
            hidden_states = tuple(states) + (None,) * (self.num_layers - self.used_layers)
        result = BaseModelOutputWithPast(last_hidden_state=out, hidden_states=hidden_states)
        return result if return_dict is not False else result.to_tuple()


def _is_mrope(stack: nn.Module) -> bool:
    return type(stack).__name__.startswith("Qwen2_5_VL")


def _rope_by_layer_type(stack: nn.Module) -> bool:
    return type(stack).__name__ == "Gemma3TextModel"


def decoder_stack(model: nn.Module) -> nn.Module | None:
    """The decoder stack (the module holding `layers`, `embed_tokens`, `norm`) of a supported model:
    the model itself, or the language tower inside a causal-LM or vision-language wrapper."""
    import transformers

    stacks = tuple(getattr(transformers, n) for n in ("Gemma2Model", "LlamaModel", "MistralModel", "Qwen2Model",
                                                       "Qwen3Model", "Qwen2_5_VLTextModel", "Gemma3TextModel")
                   if hasattr(transformers, n))
    wrappers = tuple(getattr(transformers, n) for n in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM",
                                                         "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLModel",
                                                         "Mistral3ForConditionalGeneration", "Mistral3Model",
                                                         "Gemma3ForConditionalGeneration", "Gemma3Model",
                                                         "Gemma3ForCausalLM")
                     if hasattr(transformers, n))
    while isinstance(model, wrappers):  # ForCausalLM / ForConditionalGeneration -> .model -> .language_model
        model = model.language_model if hasattr(model, "language_model") else model.model
    return model if isinstance(model, stacks) else None


class NoLogits(nn.Module):
    """Takes the place of an LM head a pipeline never reads: empty logits, no weights, no work."""

    def forward(self, h):
        return h[..., :0]


VISION_LANGUAGE = ("Mistral3ForConditionalGeneration", "Gemma3ForConditionalGeneration")


def _untied_llama_head(model: nn.Module) -> bool:
    """HiDream's Llama: a LlamaForCausalLM whose head is its own weights (tied, it would cost nothing)."""
    return (any(c.__name__ == "LlamaForCausalLM" for c in type(model).__mro__)
            and not getattr(model.config, "tie_word_embeddings", False))


def _unused_modules(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(owner, attribute) of what a text-to-image call never runs, those still there: a Mistral3 or
    Gemma-3 encoder's vision tower, projector and LM head; an untied Llama causal LM's head (HiDream
    computes its logits and throws them away)."""
    if any(c.__name__ in VISION_LANGUAGE for c in type(model).__mro__):
        unused = ((model.model, "vision_tower"), (model.model, "multi_modal_projector"), (model, "lm_head"))
    elif _untied_llama_head(model):
        unused = ((model, "lm_head"),)
    else:
        return []
    return [(owner, name) for owner, name in unused
            if isinstance(getattr(owner, name, None), nn.Module) and not isinstance(getattr(owner, name), NoLogits)]


def has_unused_heads(model: nn.Module) -> bool:
    return bool(_unused_modules(model))


def drop_unused_heads(model: nn.Module) -> int:
    """Delete what a text-to-image call never runs (`_unused_modules`); return the parameters that
    frees (a head tied to the kept embeddings frees none; 0 for other models). Idempotent."""
    dropped, kept = 0, {id(p) for p in tower(model).parameters()}
    for owner, name in _unused_modules(model):
        dropped += sum(p.numel() for p in getattr(owner, name).parameters() if id(p) not in kept)
        if name == "lm_head":
            model.lm_head = NoLogits()
        else:
            delattr(owner, name)
    return dropped


def to_decoder_sub_blocks(model: nn.Module, hidden_state: int | None = None) -> DecoderSubBlockEncoder | None:
    """Put a decoder-only model into sub-block form (None if it is not one). `hidden_state` is the
    index of the hidden state the pipeline reads (default: the config's record of it, else -1)."""
    stack = decoder_stack(model)
    if stack is None:
        return None
    if isinstance(stack.layers, DecoderSubBlockEncoder):
        if hidden_state is not None and hidden_state != stack.layers.hidden_state:
            raise InputError(f"this encoder's view reads hidden state {stack.layers.hidden_state}, not {hidden_state}")
        return stack.layers
    if hidden_state is None:
        hidden_state = int(getattr(model.config, HIDDEN_STATE_KEY, -1))
    enc = DecoderSubBlockEncoder(stack, hidden_state)
    enc.dropped_params = drop_unused_heads(model)
    if hidden_state != -1:  # saved with the config, so a pruned encoder loads back with the same view
        setattr(model.config, HIDDEN_STATE_KEY, hidden_state)
    return enc


def find_decoder_sub_blocks(model: nn.Module) -> DecoderSubBlockEncoder | None:
    stack = decoder_stack(model)
    return stack.layers if stack is not None and isinstance(stack.layers, DecoderSubBlockEncoder) else None


def tower(model: nn.Module) -> nn.Module:
    """The part of `model` a plan prunes and sparsity counts: the language tower of a vision-language
    model or a causal LM."""
    stack = decoder_stack(model)
    return stack if stack is not None else model
