"""Encoder view and surgery: the dense schedule is the original model, a plan is a hand-written
reference forward, re-use shares modules, and the view works on the meta device."""
import copy

import pytest
import torch
from transformers import T5Config, T5EncoderModel

from skrr import Plan, apply_plan, to_sub_blocks
from skrr.encoders.view import ATTN, FFN, total_params
from skrr.models import CONFIGS_DIR
from skrr.plan import PlanError

T5_XXL_PARAMS = 4_762_310_656  # T5-v1.1-XXL encoder: a published fact, not a number this code produced


def _reference_t5(dense: T5EncoderModel, ids, mask, plan: Plan) -> torch.Tensor:
    """Plain forward over the *original* T5 layers, following the plan by hand."""
    blocks = dense.encoder.block
    h = dense.encoder.embed_tokens(ids)
    length = ids.shape[1]
    bias = blocks[0].layer[0].SelfAttention.compute_bias(length, length)  # block 0's table, for every block
    additive = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
    layers = [layer for block in blocks for layer in (block.layer[0], block.layer[-1])]  # 2b attn, 2b+1 ffn
    for i in range(len(layers)):
        if i in plan.skip and i not in plan.reuse:
            continue
        layer = layers[plan.reuse.get(i, i)]
        if i % 2 == 0:
            h = layer(h, attention_mask=additive, position_bias=bias)[0]
        else:
            h = layer(h)
    return dense.encoder.final_layer_norm(h)


def test_t5_dense_schedule_reproduces_original_exactly(tiny_t5, t5_inputs):
    ids, mask = t5_inputs
    with torch.no_grad():
        expected = tiny_t5(input_ids=ids, attention_mask=mask).last_hidden_state
        to_sub_blocks(tiny_t5)
        got = tiny_t5(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(got, expected)


def test_clip_dense_schedule_reproduces_original_exactly(tiny_clip):
    ids = torch.randint(2, 400, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = tiny_clip(input_ids=ids)
        to_sub_blocks(tiny_clip)
        got = tiny_clip(input_ids=ids)
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
    assert torch.equal(got.pooler_output, expected.pooler_output)


def test_empty_plan_reproduces_dense_output(tiny_t5, t5_inputs):
    ids, mask = t5_inputs
    dense = copy.deepcopy(tiny_t5)
    apply_plan(tiny_t5, Plan(skip=[]))
    with torch.no_grad():
        assert torch.equal(tiny_t5(input_ids=ids, attention_mask=mask)[0], dense(input_ids=ids, attention_mask=mask)[0])


@pytest.mark.parametrize("skip,reuse", [
    ([3, 8, 5], {}),
    ([0], {}),  # the position-bias table lives in sub-block 0: skipping it must keep the bias
    ([0, 7, 2, 11], {0: 4, 7: 9}),  # block 0's attention re-uses block 2's
    ([4, 5, 9], {5: 3, 9: 1}),
])
def test_t5_plan_matches_hand_written_reference(tiny_t5, t5_inputs, skip, reuse):
    ids, mask = t5_inputs
    dense = copy.deepcopy(tiny_t5)
    plan = Plan(skip=skip, reuse=reuse)
    apply_plan(tiny_t5, plan)
    with torch.no_grad():
        got = tiny_t5(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = _reference_t5(dense, ids, mask, plan)
        dense_out = dense(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, dense_out, atol=1e-3)  # the plan really changed the computation


def test_clip_plan_matches_hand_written_reference(tiny_clip):
    ids = torch.randint(2, 400, (2, 10), generator=torch.Generator().manual_seed(0))
    dense = copy.deepcopy(tiny_clip)
    plan = Plan(skip=[2, 1], reuse={2: 0})
    apply_plan(tiny_clip, plan)
    tm = dense  # transformers 5: CLIPTextModel is the text transformer itself
    with torch.no_grad():
        h = tm.embeddings(input_ids=ids)
        causal = torch.full((10, 10), torch.finfo(h.dtype).min).triu(1)[None, None]
        branches = [(layer.layer_norm1, layer.self_attn) for layer in tm.encoder.layers]
        mlps = [(layer.layer_norm2, layer.mlp) for layer in tm.encoder.layers]
        for i in range(6):
            if i in plan.skip and i not in plan.reuse:
                continue
            src = plan.reuse.get(i, i)
            if i % 2 == 0:
                norm, attn = branches[src // 2]
                h = h + attn(hidden_states=norm(h), attention_mask=causal)[0]
            else:
                norm, mlp = mlps[src // 2]
                h = h + mlp(norm(h))
        expected = tm.final_layer_norm(h)
        got = tiny_clip(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_reused_module_is_shared_not_copied(tiny_t5):
    enc = to_sub_blocks(tiny_t5)
    kept = enc.branches["4"]
    apply_plan(tiny_t5, Plan(skip=[0, 1], reuse={0: 4, 1: 3}))
    assert enc.schedule[:5] == [4, 3, 2, 3, 4]
    assert enc.branches[str(enc.schedule[0])] is kept
    assert "0" not in enc.branches and "1" not in enc.branches  # skipped weights are gone
    q = kept.layer.SelfAttention.q.weight
    assert sum(p.data_ptr() == q.data_ptr() for p in tiny_t5.parameters()) == 1  # one storage, not two


def test_position_bias_table_survives_skipping_sub_block_0(tiny_t5):
    table = tiny_t5.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    apply_plan(tiny_t5, Plan(skip=[0]))
    assert tiny_t5.encoder.relative_attention_bias.weight is table


def test_sub_block_table_types_and_counts(tiny_t5):
    blocks = to_sub_blocks(tiny_t5).sub_blocks
    assert [b.kind for b in blocks] == [ATTN, FFN] * 6
    assert [b.block for b in blocks] == [i // 2 for i in range(12)]
    attn = tiny_t5.encoder.branches["2"].layer  # T5LayerSelfAttention of block 1: q, k, v, o + norm
    d, inner, ff = 32, 4 * 8, 48
    assert blocks[2].num_params == sum(p.numel() for p in attn.parameters()) == 4 * d * inner + d
    assert blocks[3].num_params == 3 * d * ff + d  # gated-gelu: wi_0, wi_1, wo + norm
    # every parameter is either a sub-block's or shared (embedding, bias table, final norm)
    shared = 300 * d + 8 * 4 + d
    assert total_params(tiny_t5) == sum(b.num_params for b in blocks) + shared


def test_meta_device_view_counts_t5_xxl():
    import json

    config = T5Config(**json.loads((CONFIGS_DIR / "t5_v1_1_xxl.json").read_text()))
    with torch.device("meta"):
        model = T5EncoderModel(config)
    blocks = to_sub_blocks(model).sub_blocks
    assert len(blocks) == 48
    assert total_params(model) == T5_XXL_PARAMS
    assert all(p.is_meta for p in model.parameters())
    plan = Plan(skip=[0, 1])
    apply_plan(model, plan)  # surgery works on meta too
    assert total_params(model) == T5_XXL_PARAMS  # the denominator is the dense model
    removed = blocks[0].num_params + blocks[1].num_params
    assert sum(p.numel() for p in model.parameters()) == T5_XXL_PARAMS - removed
    assert plan.sparsity == removed / T5_XXL_PARAMS


def test_plan_applies_only_to_a_dense_encoder(tiny_t5):
    apply_plan(tiny_t5, Plan(skip=[1]))
    with pytest.raises(PlanError, match="already pruned"):
        apply_plan(tiny_t5, Plan(skip=[3]))


def test_unsupported_model_is_a_clear_error():
    with pytest.raises(TypeError, match="T5EncoderModel, CLIPTextModel.*decoder-only.*got Linear"):
        to_sub_blocks(torch.nn.Linear(2, 2))


def test_clip_with_projection_dense_schedule_reproduces_original():
    from transformers import CLIPTextModelWithProjection

    from skrr.models.tiny import _tiny_clip

    torch.manual_seed(0)
    model = _tiny_clip(CLIPTextModelWithProjection).eval()
    ids = torch.randint(2, 400, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=ids)
        to_sub_blocks(model)
        got = model(input_ids=ids)
    assert len(to_sub_blocks(model)) == 6
    assert torch.equal(got.text_embeds, expected.text_embeds)
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
