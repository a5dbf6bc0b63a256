"""The plan file: JSON round trip, hand-written plans, and every validation error."""
import json

import pytest

from skrr import Plan, PlanError, apply_plan, to_sub_blocks
from skrr.models.tiny import tiny_t5 as build_t5
from skrr.plan import config_hash, sparsity


def _validate(plan: Plan, model) -> Plan:
    return plan.validate(to_sub_blocks(model).sub_blocks, model.config, "tiny_t5")


def test_json_round_trip(tmp_path, tiny_t5):
    plan = Plan(skip=[5, 0, 9], reuse={9: 7, 0: 2}, method={"name": "skrr", "beam": 3}, info={"D": [0.1, 0.2]})
    apply_plan(tiny_t5, plan, name="tiny_t5")
    path = plan.save(tmp_path / "plan.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == "skrr-plan/1"
    assert raw["skip"] == [5, 0, 9]  # order chosen, not sorted
    assert raw["reuse"] == {"0": 2, "9": 7}
    assert raw["encoder"] == {"name": "tiny_t5", "config_hash": config_hash(tiny_t5.config), "num_sub_blocks": 12}
    loaded = Plan.load(tmp_path)  # a directory means its plan.json
    for field in ("skip", "reuse", "encoder", "sparsity", "method", "weights"):
        assert getattr(loaded, field) == getattr(plan, field), field
    assert loaded.info["D"] == [0.1, 0.2]
    assert not list(tmp_path.glob(".plan.json.*"))  # no temp file left behind


def test_sparsity_counts_skipped_parameters_and_ignores_reuse(tiny_t5):
    blocks = to_sub_blocks(tiny_t5).sub_blocks
    total = sum(p.numel() for p in tiny_t5.parameters())
    p1, p2 = Plan(skip=[3, 4]), Plan(skip=[3, 4], reuse={3: 1})
    apply_plan(build_t5(), p1)
    apply_plan(build_t5(), p2)
    expected = (blocks[3].num_params + blocks[4].num_params) / total
    assert p1.sparsity == p2.sparsity == expected == sparsity(blocks, [3, 4], total)


def test_hand_written_plan_with_only_skip_is_accepted(tmp_path, tiny_t5):
    (tmp_path / "mine.json").write_text('{"skip": [2, 3]}')
    plan = Plan.load(tmp_path / "mine.json")
    apply_plan(tiny_t5, plan)
    assert plan.encoder["num_sub_blocks"] == 12 and plan.encoder["config_hash"] == config_hash(tiny_t5.config)
    assert 0 < plan.sparsity < 1
    (tmp_path / "reuse.json").write_text('{"skip": [2], "reuse": {"2": 4}}')
    assert _validate(Plan.load(tmp_path / "reuse.json"), build_t5()).reuse == {2: 4}


@pytest.mark.parametrize("plan,message", [
    (Plan(skip=[3, 3]), "skips a sub-block twice"),
    (Plan(skip=[12]), r"sub-block 12, but the encoder has sub-blocks 0\.\.11"),
    (Plan(skip=[-1]), r"sub-block -1, but the encoder has sub-blocks 0\.\.11"),
    (Plan(skip=[3], reuse={5: 1}), "position 5, which the plan does not skip"),
    (Plan(skip=[3, 1], reuse={3: 1}), "re-uses sub-block 1, which is not a kept sub-block"),
    (Plan(skip=[3], reuse={3: 99}), "re-uses sub-block 99, which is not a kept sub-block"),
    (Plan(skip=[3], reuse={3: 2}), r"position 3 \(ffn\) cannot re-use sub-block 2 \(attn\): types differ"),
    (Plan(skip=[1], encoder={"name": "t5_xxl", "config_hash": "0123456789abcdef"}), "plan was made for encoder 't5_xxl'"),
    (Plan(skip=[1], encoder={"name": "tiny_t5", "num_sub_blocks": 48}), "encoder with 48 sub-blocks, this one has 12"),
])
def test_invalid_plans_are_rejected(tiny_t5, plan, message):
    with pytest.raises(PlanError, match=message):
        _validate(plan, tiny_t5)


def test_invalid_plan_leaves_the_model_dense(tiny_t5):
    with pytest.raises(PlanError):
        apply_plan(tiny_t5, Plan(skip=[1, 1]))
    enc = to_sub_blocks(tiny_t5)
    assert sorted(int(k) for k in enc.branches) == list(range(12)) and enc.schedule == list(range(12))


def test_plan_for_another_encoder_is_rejected(tmp_path):
    small, other = build_t5(num_layers=6), build_t5(d_model=16, num_layers=6)
    plan = Plan(skip=[1])
    apply_plan(small, plan, name="small")
    plan.save(tmp_path / "plan.json")
    with pytest.raises(PlanError, match="plan was made for encoder 'small'"):
        apply_plan(other, Plan.load(tmp_path / "plan.json"))


@pytest.mark.parametrize("text,message", [
    ('{"reuse": {}}', "needs a 'skip' list"),
    ('{"skip": ["a"]}', "indices must be integers"),
    ('{"skip": 3}', "indices must be integers"),
    ('{"skip": [1], "reuse": {"x": 2}}', "indices must be integers"),
    ('{"skip": [1,', "is not valid JSON"),
])
def test_malformed_plan_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PlanError, match=message):
        Plan.load(path)


def test_missing_plan_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="plan file not found"):
        Plan.load(tmp_path / "nope.json")


def test_config_hash_ignores_checkpoint_keys_but_not_architecture():
    """A plan made on the hub's config (extra keys like `output_past`, dtype, architectures) must
    match the same encoder built from skrr/configs, and not a different architecture."""
    from transformers import T5Config

    from skrr.models import CONFIGS_DIR

    spec = json.loads((CONFIGS_DIR / "t5_v1_1_xxl.json").read_text())
    shipped = T5Config(**spec)
    hub_like = T5Config(**spec, output_past=True, architectures=["T5EncoderModel"], torch_dtype="float32",
                        _name_or_path="PixArt-alpha/PixArt-Sigma-XL-2-1024-MS")
    assert config_hash(shipped) == config_hash(hub_like)
    for change in ({"d_model": 2048}, {"num_layers": 12}, {"feed_forward_proj": "relu"}):
        assert config_hash(T5Config(**{**spec, **change})) != config_hash(shipped), change
