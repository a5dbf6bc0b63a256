"""Decoder-only text encoders (Gemma-2, Llama, Qwen2, Qwen2.5-VL's language tower) as sub-blocks:
the empty plan is the stock model bit for bit (padding, sliding windows, hidden_states), a plan
matches a hand-written reference, and real sizes come from shipped configs on the meta device."""
import copy

import pytest
import torch
from transformers import (
    Gemma2Config,
    Gemma2Model,
    LlamaConfig,
    LlamaModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2Model,
)

from skrr import Plan, apply_plan, to_sub_blocks
from skrr.encoders.decoder_only import decoder_stack
from skrr.encoders.view import total_params

SMALL = dict(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, pad_token_id=0)


def _gemma2():
    # sliding window 4 < the 10-token inputs, so sliding and full layers see different masks
    return Gemma2Model(Gemma2Config(**SMALL, head_dim=8, query_pre_attn_scalar=8, sliding_window=4))


def _llama():
    return LlamaModel(LlamaConfig(**SMALL))


def _qwen2():
    return Qwen2Model(Qwen2Config(**SMALL, use_sliding_window=True, sliding_window=4, max_window_layers=2))


def _qwen2_5_vl():
    text = dict(SMALL, bos_token_id=None, eos_token_id=1,
                rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e4})
    vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32, patch_size=2,
                  temporal_patch_size=1, spatial_merge_size=1, window_size=4, fullatt_block_indexes=[0])
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))


FAMILIES = {"gemma2": _gemma2, "llama": _llama, "qwen2": _qwen2, "qwen2_5_vl": _qwen2_5_vl}


def _build(family):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FAMILIES[family]().eval()
    for p in model.parameters():  # random norm gains, so a norm left out or applied twice shows
        if p.dim() == 1:
            p.data.uniform_(-0.5, 0.5)
    return model


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    return ids, mask


def _states(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_plan_reproduces_stock_model_bit_for_bit(family, inputs):
    stock = _build(family)
    view = copy.deepcopy(stock)
    apply_plan(view, Plan(skip=[]))
    ref, out = _states(stock, *inputs), _states(view, *inputs)
    assert len(out) == len(ref) == 5
    assert all(torch.equal(a, b) for a, b in zip(ref, out))
    with torch.no_grad():  # and without output_hidden_states
        assert torch.equal(stock(input_ids=inputs[0], attention_mask=inputs[1])[0] if family != "qwen2_5_vl"
                           else stock.model(input_ids=inputs[0], attention_mask=inputs[1])[0],
                           view(input_ids=inputs[0], attention_mask=inputs[1])[0] if family != "qwen2_5_vl"
                           else view.model(input_ids=inputs[0], attention_mask=inputs[1])[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_plan_matches_hand_written_reference(family, inputs):
    """Skip layer 0's attention (its rotary embeddings and masks must survive) and layer 2's MLP,
    with layer 1's MLP re-used in its place; the reference calls the stock modules by hand."""
    stock = _build(family)
    view = copy.deepcopy(stock)
    apply_plan(view, Plan(skip=[0, 5], reuse={5: 3}))
    stack = decoder_stack(stock)
    ids, mask = inputs
    with torch.no_grad():
        out = _states(view, ids, mask)[-1]
        ref_states = _states(stock, ids, mask)  # only to check the stock run differs
        layers = stack.layers
        sandwich = hasattr(layers[0], "pre_feedforward_layernorm")

        def mlp(layer, h):
            if sandwich:
                return h + layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(h)))
            return h + layer.mlp(layer.post_attention_layernorm(h))

        enc = to_sub_blocks(copy.deepcopy(stock))
        h, ctx = enc.prepare(input_ids=ids, attention_mask=mask)
        types = getattr(stock.config.get_text_config(), "layer_types", None) or ["full_attention"] * 4
        kw = dict(position_embeddings=ctx["rope"], position_ids=ctx["position_ids"])
        h = mlp(layers[0], h)  # layer 0 without attention
        h = layers[1](h, attention_mask=ctx["masks"][types[1]], **kw)
        a = layers[2].self_attn(hidden_states=layers[2].input_layernorm(h), attention_mask=ctx["masks"][types[2]], **kw)[0]
        h = h + (layers[2].post_attention_layernorm(a) if sandwich else a)
        h = mlp(layers[1], h)  # re-used MLP of layer 1
        h = layers[3](h, attention_mask=ctx["masks"][types[3]], **kw)
        ref = stack.norm(h)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, ref_states[-1])


def test_sliding_window_layers_get_their_own_mask(inputs):
    model = _gemma2()
    enc = to_sub_blocks(model)
    _, ctx = enc.prepare(*inputs)
    assert [enc.branches[str(2 * b)].attention_type for b in range(4)] == model.config.layer_types
    assert not torch.equal(ctx["masks"]["sliding_attention"], ctx["masks"]["full_attention"])


def test_penultimate_view_stops_before_the_unused_layer(inputs):
    """Lumina 2 reads hidden_states[-2]: the view keeps 3 of 4 layers, frees the rest, and the
    state the pipeline reads is unchanged."""
    stock = _build("gemma2")
    ref = _states(stock, *inputs)[-2]
    view = copy.deepcopy(stock)
    enc = to_sub_blocks(view, hidden_state=-2)
    assert len(enc) == 6 and enc.used_layers == 3
    last = stock.layers[3]
    assert enc.unused_params == sum(p.numel() for p in last.parameters()) + stock.norm.weight.numel()
    assert total_params(view) == total_params(stock) - enc.unused_params
    out = _states(view, *inputs)
    assert len(out) == 5 and out[-1] is None and torch.equal(out[-2], ref)
    assert view.config.skrr_hidden_state == -2  # saved with the config: a pruned encoder reloads the same view
    with pytest.raises(ValueError, match="reads hidden state -2"):
        to_sub_blocks(view, hidden_state=-1)


def test_language_tower_only_for_vision_language_models():
    model = _build("qwen2_5_vl")
    enc = to_sub_blocks(model)
    tower = model.model.language_model
    assert enc is tower.layers and len(enc) == 8
    assert total_params(model) == sum(p.numel() for p in tower.parameters())
    assert total_params(model) < sum(p.numel() for p in model.parameters())  # vision tower, LM head excluded


# --- real sizes on the meta device (published configs shipped in skrr/configs) --------------------
def _meta_encoder(name):
    from skrr.models import meta_components, model_config

    cfg = model_config(name)
    encoder = meta_components(cfg)[cfg.text_encoder]
    return encoder, to_sub_blocks(encoder, hidden_state=int(cfg.hidden_state))


def _gemma_2_2b_by_hand():
    hidden, inter, layers, vocab, q, kv = 2304, 9216, 26, 256000, 8 * 256, 4 * 256
    attn = hidden * (q + 2 * kv) + q * hidden + 2 * hidden  # q, k, v, o; input and post-attention norms
    mlp = 3 * hidden * inter + 2 * hidden  # gate, up, down; pre- and post-feedforward norms
    return vocab * hidden, attn, mlp, layers


def test_sana_gemma_2_2b_on_meta():
    emb, attn, mlp, layers = _gemma_2_2b_by_hand()
    encoder, enc = _meta_encoder("sana_1600m")
    assert len(enc) == 52 and {b.num_params for b in enc.sub_blocks} == {attn, mlp}
    assert total_params(encoder) == emb + layers * (attn + mlp) + 2304 == 2_614_341_888


def test_lumina2_counts_the_25_used_layers():
    emb, attn, mlp, layers = _gemma_2_2b_by_hand()
    encoder, enc = _meta_encoder("lumina2")
    assert len(enc) == 50 and enc.unused_params == attn + mlp + 2304
    assert total_params(encoder) == emb + (layers - 1) * (attn + mlp)


def test_qwen_image_language_tower_on_meta():
    hidden, inter, vocab, q, kv = 3584, 18944, 152064, 3584, 4 * 128
    attn = hidden * (q + 2 * kv) + (q + 2 * kv) + q * hidden + hidden  # q/k/v have biases
    mlp = 3 * hidden * inter + hidden
    encoder, enc = _meta_encoder("qwen_image")
    assert len(enc) == 56 and {b.num_params for b in enc.sub_blocks} == {attn, mlp}
    assert total_params(encoder) == vocab * hidden + 28 * (attn + mlp) + hidden == 7_070_619_136
