"""ShortGPT, LaCo and FinerCut on tiny offline encoders: each checked against a direct computation."""
import pytest
import torch
from omegaconf import OmegaConf

from skrr import Plan, apply_plan, load_pruned, save_pruned, to_sub_blocks
from skrr.baselines import collapse, influence
from skrr.errors import ConfigError
from skrr.experiments.cli.prune import write_plans
from skrr.methods import as_method
from skrr.models import load_text_side
from skrr.prune import make_context


def as_method_run(ctx, cfg, targets):
    """A baseline as the framework builds it: its YAML defaults under the test's settings."""
    return as_method(cfg).run(ctx, targets)

CALIB = OmegaConf.create({"source": "builtin", "pool": 200, "size": 8, "seed": 0})
LACO = {"name": "laco", "merge": "rdsc", "C": 3, "L": 1, "H": 24, "I": 2, "T": -1.0, "num_sim_prompts": 4,
        "projection": False, "reuse": False}


def context():
    return make_context(load_text_side("tiny_pixart"), CALIB, projection=False, progress=False)


@pytest.fixture(scope="module")
def ctx():
    return context()


def fresh_encoder():
    return load_text_side("tiny_pixart").encoder


def output(model, tokens):
    return model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])[0]


# --- ShortGPT ------------------------------------------------------------------------------
def test_block_influence_matches_hooks_on_the_original_blocks(tiny_t5, t5_inputs):
    ids, mask = t5_inputs
    io = []
    hooks = [b.register_forward_hook(lambda m, args, kw, out: io.append((kw.get("hidden_states", args[0] if args else None),
                                                                          out[0])), with_kwargs=True)
             for b in tiny_t5.encoder.block]
    with torch.no_grad():
        tiny_t5(input_ids=ids, attention_mask=mask)
    for h in hooks:
        h.remove()
    attend = mask.bool()
    expected = [1 - torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)[attend].mean().item() for x, y in io]
    enc = to_sub_blocks(tiny_t5)
    bi = influence.block_influence(enc, {"input_ids": ids, "attention_mask": mask, "attend": attend}, batch_size=1)
    assert bi == pytest.approx(expected, abs=1e-5)
    assert min(expected) > 1e-3  # random blocks do change the stream


def test_identity_block_has_zero_influence_and_goes_first():
    c = context()
    enc = to_sub_blocks(c.text_side.encoder)
    with torch.no_grad():  # block 2 becomes the identity: no attention output, no FFN output
        enc.branches["4"].layer.SelfAttention.o.weight.zero_()
        enc.branches["5"].layer.DenseReluDense.wo.weight.zero_()
    [plan] = as_method_run(c, OmegaConf.create({"name": "shortgpt", "reuse": False}), [0.05])
    assert plan.info["bi"][2] == pytest.approx(0.0, abs=1e-6)
    assert min(b for i, b in enumerate(plan.info["bi"]) if i != 2) > 1e-3
    assert plan.skip == [4, 5] and plan.info["removed_blocks"] == [2]


def test_shortgpt_removes_lowest_bi_blocks_until_target(ctx):
    cfg = OmegaConf.create({"name": "shortgpt", "reuse": False})
    plans = as_method_run(ctx, cfg, [0.2, 0.4])
    order = sorted(range(len(plans[0].info["bi"])), key=lambda b: plans[0].info["bi"][b])
    for plan, t in zip(plans, (0.2, 0.4)):
        k = len(plan.info["removed_blocks"])
        assert plan.info["removed_blocks"] == order[:k]
        assert plan.sparsity >= t
        assert sum(ctx.sub_blocks[i].num_params for i in plan.skip[:-2]) / ctx.total < t  # one block fewer misses it


def test_reference_bi_is_shortgpts_compute_bi_over_hidden_states(ctx):
    """`bi: reference` against ShortGPT's own formula (short_hf.py: block_influence + compute_bi)
    applied to transformers' `output_hidden_states` of the dense encoder, batch by batch."""
    [plan] = as_method_run(ctx, OmegaConf.create({"name": "shortgpt", "reuse": False, "bi": "reference"}), [0.2])
    encoder, tokens = fresh_encoder(), ctx.calib.tokens
    importances = None
    with torch.no_grad():
        for s in range(0, tokens["input_ids"].shape[0], 8):  # the method's batch_size
            hiddens = encoder(input_ids=tokens["input_ids"][s:s + 8], attention_mask=tokens["attention_mask"][s:s + 8],
                              output_hidden_states=True).hidden_states
            importances = importances or [0.0] * (len(hiddens) - 1)
            for i in range(len(hiddens) - 1):
                d = hiddens[i].shape[-1]
                x, y = hiddens[i].reshape(-1, d), hiddens[i + 1].reshape(-1, d)
                sim = (x @ y.T) / (x.norm(dim=-1, keepdim=True) * y.norm(dim=-1, keepdim=True))
                importances[i] += (1 - sim.diagonal().nan_to_num(nan=0.5)).sum().item()
    assert plan.info["bi"] == pytest.approx(importances, rel=1e-4)
    assert plan.method["bi"] == "reference"
    raw = as_method_run(ctx, OmegaConf.create({"name": "shortgpt", "reuse": False}), [0.2])[0].info["bi"]
    assert len(raw) == len(importances) and raw != pytest.approx(importances, rel=1e-2)  # another measure


def test_bi_default_leaves_plans_and_cache_keys_as_before():
    from skrr.config.files import group_option
    from skrr.experiments.runner.stages import Plans, digest, settings_of

    assert "bi" not in as_method({"name": "shortgpt"}).settings()  # the plan a ShortGPT run records
    config = OmegaConf.to_container(group_option("method", "shortgpt"))
    before = {k: v for k, v in config.items() if k != "bi"}  # the YAML before `bi` existed
    model = {"name": "tiny_pixart"}
    assert Plans(model, as_method(config), config, {}, (0.4,)).key == \
        digest("plan", model, {**settings_of(before), "sparsity": [0.4]}, {})
    reference = {**config, "bi": "reference"}
    assert Plans(model, as_method(reference), reference, {}, (0.4,)).key != digest(
        "plan", model, {**settings_of(before), "sparsity": [0.4]}, {})
    with pytest.raises(ConfigError, match="method.bi must be one of raw, reference"):
        as_method({"name": "shortgpt", "bi": "published"})


# --- LaCo ----------------------------------------------------------------------------------
def test_merge_rules():
    g = torch.Generator().manual_seed(0)
    thetas = [{"w": torch.randn(4, 3, generator=g)} for _ in range(3)]
    rdsc = collapse.merge(thetas, "rdsc")["w"]
    assert torch.equal(rdsc, thetas[0]["w"] + ((thetas[1]["w"] - thetas[0]["w"]) + (thetas[2]["w"] - thetas[0]["w"])))
    assert torch.equal(collapse.merge(thetas, "last")["w"], thetas[2]["w"])


def test_mergeable_excludes_norms(ctx):
    names = collapse.mergeable(to_sub_blocks(ctx.text_side.encoder), 1)
    assert names and not any("norm" in k for k in names)
    assert {k.split(".")[1] for k in names} == {"2", "3"}


@pytest.mark.parametrize("how", ["rdsc", "last"])
def test_laco_plan_writes_merged_weights_that_load_back(ctx, tmp_path, how):
    cfg = OmegaConf.create({**LACO, "merge": how})
    [plan] = as_method_run(ctx, cfg, [0.25])
    # H clipped to 6 blocks, C=3: the first merge collapses blocks 3, 4, 5 into 3 (T=-1 accepts it).
    assert plan.info["reached_target"] and plan.info["removed_blocks"] == [4, 5]
    assert plan.skip == [8, 9, 10, 11] and plan.info["merged_blocks"] == [3]
    dense = dict(fresh_encoder().named_parameters())
    weights = plan.info["_weights"]
    q = "encoder.block.{}.layer.0.SelfAttention.q.weight"
    th = [dense[q.format(b)] for b in (3, 4, 5)]
    expected = th[0] + ((th[1] - th[0]) + (th[2] - th[0])) if how == "rdsc" else th[2]
    assert torch.equal(weights["encoder.branches.6.layer.SelfAttention.q.weight"], expected)
    assert not any("norm" in k for k in weights)

    [path] = write_plans([plan], tmp_path, False, None, "cpu")
    loaded = Plan.load(path)
    assert loaded.weights == "plan_weights.safetensors" and (tmp_path / loaded.weights).is_file()
    assert "_weights" not in loaded.info
    model = apply_plan(fresh_encoder(), loaded)
    assert loaded.sparsity == pytest.approx(plan.sparsity)
    own = dict(model.named_parameters())
    assert torch.equal(own["encoder.branches.6.layer.SelfAttention.q.weight"], expected)
    assert torch.equal(own["encoder.branches.6.layer.layer_norm.weight"], dense["encoder.block.3.layer.0.layer_norm.weight"])
    # the pruned encoder's output is the merged model's: block 3 with merged weights, blocks 4-5 gone
    ref = fresh_encoder()
    enc = to_sub_blocks(ref)
    with torch.no_grad():
        for k, v in weights.items():
            dict(ref.named_parameters())[k].copy_(v)
    enc.schedule = [None if i in loaded.skip else i for i in range(len(enc))]
    tokens = ctx.calib.tokens
    with torch.no_grad():
        out = output(model, tokens)
        assert torch.allclose(out, output(ref, tokens), atol=1e-6)
        assert not torch.allclose(out, output(apply_plan(fresh_encoder(), Plan(skip=loaded.skip)), tokens), atol=1e-4)
        save_pruned(model, loaded, tmp_path / "enc")
        assert torch.allclose(output(load_pruned(tmp_path / "enc"), tokens), out, atol=1e-6)


def test_laco_similarity_gate_rejects_everything_below_threshold(ctx):
    [plan] = as_method_run(ctx, OmegaConf.create({**LACO, "C": 2, "T": 0.9999}), [0.25])
    assert plan.skip == [] and plan.info["reached_target"] is False and plan.info["_weights"] == {}
    assert plan.info["merges"] and all(m["sim"] <= 0.9999 and not m["accepted"] for m in plan.info["merges"])


def test_laco_rejects_bad_settings_when_built():
    with pytest.raises(ConfigError, match="method.merge must be one of rdsc, last, got 'mean'"):
        as_method({**LACO, "merge": "mean"})
    with pytest.raises(ConfigError, match=r"method.C must be a whole number >= 2, got 1"):
        as_method({**LACO, "C": 1})


# --- FinerCut ------------------------------------------------------------------------------
def test_finercut_first_removal_is_argmin_of_single_removal_mse(ctx):
    cfg = OmegaConf.create({"name": "finercut", "metric": "mse", "projection": False, "null_term": False})
    [plan] = as_method_run(ctx, cfg, [0.05])
    tokens = ctx.calib.tokens
    model = fresh_encoder()
    enc = to_sub_blocks(model)
    m = tokens["attend"].unsqueeze(-1).float()
    with torch.no_grad():
        dense = output(model, tokens)
        mse = []
        for i in range(len(enc)):
            enc.schedule = [None if j == i else j for j in range(len(enc))]
            mse.append(float((((output(model, tokens) - dense) ** 2) * m).sum() / (m.sum() * dense.shape[-1])))
    assert plan.skip[0] == min(range(len(mse)), key=mse.__getitem__)
    assert plan.info["depth_d"][0] == pytest.approx(min(mse), rel=1e-4)


# --- all three: the plan is an ordinary plan -----------------------------------------------
@pytest.mark.parametrize("name,cfg", [("shortgpt", {}), ("finercut", {"null_term": False}), ("laco", LACO),
                                      ("finercut", {"null_term": False, "reuse": True})])
def test_plans_load_validate_and_report_sparsity(ctx, tmp_path, name, cfg):
    plans = as_method_run(ctx, OmegaConf.create({"name": name, "projection": False, **cfg}), [0.2, 0.3])
    paths = write_plans(plans, tmp_path, False, None, "cpu")
    for plan, path in zip(plans, paths):
        loaded = Plan.load(path)
        model = apply_plan(fresh_encoder(), loaded)
        assert loaded.sparsity == pytest.approx(plan.sparsity) and loaded.sparsity >= plan.info["target"]
        assert loaded.method["name"] == name
        assert {int(k) for k in to_sub_blocks(model).branches} == set(range(12)) - set(loaded.skip)
        if cfg.get("reuse"):
            assert plan.info["reuse_d"]
            assert all(loaded.skip.count(p) == 1 for p in loaded.reuse)
