"""Skrr search: the discrepancy, beam-search Skip, greedy Re-use and skrr-prune.

Models are tiny T5 encoders with seeded random weights; two of them are built by hand so
that a property can only hold if the search does the right thing (a cancelling pair that
misleads greedy; a sub-block that only moves the empty prompt's embedding).
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers.models.embeddings import PixArtAlphaTextProjection
from omegaconf import OmegaConf

from skrr import Plan, apply_plan
from skrr.encoders.view import to_sub_blocks
from skrr.models import TextSide
from skrr.models.tiny import _corpus, t5_tokenizer, tiny_t5
from skrr.plan import make_schedule
from skrr.search.calibration import build_calibration
from skrr.search.discrepancy import Discrepancy
from skrr.search.prefix_cache import PrefixCachedDiscrepancy
from skrr.search.skip_reuse import beam_search, reuse_phase

MAX_LEN = 24
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    return t5_tokenizer(MAX_LEN)


def seeded_model(num_layers=6, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return tiny_t5(num_layers=num_layers).eval(), PixArtAlphaTextProjection(32, 24).eval()


def text_side(model, projection, tokenizer):
    cfg = OmegaConf.create({"name": "t5test", "max_length": MAX_LEN, "attention_mask": True, "clean_caption": False})
    return TextSide(cfg, model, tokenizer, projection)


def setup(model, projection, tokenizer, tmp_path, prompts=None, fast=True, **disc_opts):
    """Converts `model` in place; returns (encoder view, D evaluator (prefix-cached if `fast`), calibration)."""
    side = text_side(model, projection, tokenizer)
    enc = to_sub_blocks(model)
    calib = build_calibration(side, prompts or _corpus(16, 3), cache_dir=tmp_path / f"calib{len(os.listdir(tmp_path))}")
    return enc, (PrefixCachedDiscrepancy if fast else Discrepancy)(side, calib, **disc_opts), calib


def output_weight(model, i):
    """The weight that writes sub-block i's output into the residual stream."""
    block = model.encoder.block[i // 2]
    return block.layer[0].SelfAttention.o.weight if i % 2 == 0 else block.layer[-1].DenseReluDense.wo.weight


# --- an independent reference: the unconverted transformers model with skipped layers hooked out ---
def reference_features(hf_model, projection, ids, mask, skip):
    def identity(module, args, kwargs, output):
        h = args[0] if args else kwargs["hidden_states"]
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    layers = [layer for block in hf_model.encoder.block for layer in (block.layer[0], block.layer[-1])]
    hooks = [layers[i].register_forward_hook(identity, with_kwargs=True) for i in skip]
    try:
        with torch.no_grad():
            return projection(hf_model(input_ids=ids, attention_mask=mask).last_hidden_state)
    finally:
        for h in hooks:
            h.remove()


def reference_d(hf_model, projection, groups, skip):
    """MSE over attended tokens of the calibration prompts + the same for the empty prompt."""
    d = 0.0
    for ids, mask, dense in groups:
        f = reference_features(hf_model, projection, ids, mask, skip)
        err = ((f - dense) ** 2 * mask[..., None]).sum() / (mask.sum() * f.shape[-1])
        d += float(err)
    return d


def reference_groups(hf_model, projection, tokenizer, prompts):
    groups = []
    for texts in (prompts, [""]):
        t = tokenizer(texts, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt")
        dense = reference_features(hf_model, projection, t.input_ids, t.attention_mask, [])
        groups.append((t.input_ids, t.attention_mask, dense))
    return groups


def test_greedy_equals_plain_greedy_search(tokenizer, tmp_path):
    model, proj = seeded_model()
    hf_model = copy.deepcopy(model)
    prompts = _corpus(16, 3)
    enc, disc, _ = setup(model, proj, tokenizer, tmp_path, prompts)
    result = beam_search(disc, enc.sub_blocks, 1, beam_width=1, depth=6, progress=False)

    groups = reference_groups(hf_model, proj, tokenizer, prompts)
    chosen, ds = [], []
    for _ in range(6):
        scores = {i: reference_d(hf_model, proj, groups, chosen + [i]) for i in range(len(enc)) if i not in chosen}
        best = min(scores, key=lambda i: (scores[i], i))
        chosen.append(best)
        ds.append(scores[best])
    assert result.order == chosen
    assert result.depth_d == pytest.approx(ds, rel=1e-4)


def misleading_model():
    """Sub-blocks 1 and 3 (FFNs) cancel: 3 = -1 on an isolated pair of subspaces, so removing either
    alone hurts while removing both is nearly free; attention 4 is a cheaper decoy greedy takes first."""
    model, proj = seeded_model(num_layers=4)
    read = slice(0, 8)
    with torch.no_grad():
        for i in range(8):
            if i not in (1, 3):
                output_weight(model, i)[read] = 0  # nothing else writes what the pair reads
        ffn_a, ffn_b = model.encoder.block[0].layer[-1], model.encoder.block[1].layer[-1]
        drd = ffn_a.DenseReluDense
        drd.wi_0.weight[:, 8:] = 0
        drd.wi_1.weight[:, 8:] = 0
        drd.wo.weight[:8] = 0
        drd.wo.weight[16:] = 0
        drd.wo.weight.mul_(4.0)
        ffn_b.load_state_dict(ffn_a.state_dict())
        ffn_b.DenseReluDense.wo.weight.neg_()
        output_weight(model, 4).mul_(0.3)
    return model, proj


def test_beam_search_escapes_a_greedy_trap(tokenizer, tmp_path):
    model, proj = misleading_model()
    enc, disc, _ = setup(model, proj, tokenizer, tmp_path)
    dense = list(range(len(enc)))
    single = disc.evaluate(dense, [{i: None} for i in range(len(enc))])
    pair = disc.evaluate(dense, [{1: None, 3: None}])[0]
    # the trap is armed: the pair costs less together than either alone, greedy's first pick is the decoy
    assert pair < min(single[1], single[3])
    assert min(range(len(enc)), key=lambda i: single[i]) == 4

    greedy = beam_search(disc, enc.sub_blocks, 1, beam_width=1, depth=len(enc), progress=False)
    assert greedy.order[0] == 4
    for k in (2, 3):
        beam = beam_search(disc, enc.sub_blocks, 1, beam_width=k, depth=len(enc), progress=False)
        assert all(b <= g for b, g in zip(beam.depth_d, greedy.depth_d)), (k, beam.depth_d, greedy.depth_d)
        assert beam.depth_d[1] < greedy.depth_d[1]
        assert set(beam.beams[1][0][0]) == {1, 3}


def test_empty_plan_is_zero_and_prompt_order_does_not_matter(tokenizer, tmp_path):
    prompts = _corpus(20, 5)
    model, proj = seeded_model()
    enc, disc, _ = setup(model, proj, tokenizer, tmp_path, prompts)
    assert disc(list(range(len(enc)))) == 0.0
    shuffled = [prompts[i] for i in torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0))]
    _, disc2, _ = setup(model, proj, tokenizer, tmp_path, shuffled)
    plans = [{2: None}, {0: None, 5: None}, {3: None, 7: None, 8: None}]
    d1, d2 = disc.evaluate(list(range(len(enc))), plans), disc2.evaluate(list(range(len(enc))), plans)
    assert min(d1) > 0
    assert d1 == pytest.approx(d2, rel=1e-6)
    r1 = beam_search(disc, enc.sub_blocks, 1, 2, depth=5, progress=False)
    r2 = beam_search(disc2, enc.sub_blocks, 1, 2, depth=5, progress=False)
    assert r1.order == r2.order


def null_model():
    """Sub-block 5 (the last FFN) fires on `</s>` alone (a flag dimension only `</s>` has and nothing else
    writes; gelu(0) = 0 elsewhere), and nothing runs after it: removing it changes the `</s>` rows only.
    In a caption `</s>` is one attended token of many, in the empty prompt it is the only one, so its
    removal is the cheapest for the captions but blows up the null embedding."""
    model, proj = seeded_model(num_layers=3)
    with torch.no_grad():
        model.shared.weight[:, 0] = 0
        model.shared.weight[1, 0] = 3.0  # </s>
        for i in range(5):
            output_weight(model, i)[0] = 0
        drd = model.encoder.block[2].layer[-1].DenseReluDense
        drd.wi_0.weight[:, 1:] = 0  # gelu(0) = 0: silent unless the flag is set
        drd.wo.weight.mul_(NULL_SCALE)
    return model, proj


NULL_SCALE = 20.0


def test_null_term_changes_the_plan(tokenizer, tmp_path):
    model, proj = null_model()
    enc, with_null, _ = setup(model, proj, tokenizer, tmp_path)
    _, without_null, _ = setup(model, proj, tokenizer, tmp_path, null_term=False)
    dense = list(range(len(enc)))
    c_only = without_null.evaluate(dense, [{i: None} for i in range(len(enc))])
    both = with_null.evaluate(dense, [{i: None} for i in range(len(enc))])
    null_part = [b - c for b, c in zip(both, c_only)]
    # removing 5 is the cheapest change for the captions, yet moves the empty prompt several times more
    assert null_part[5] > 5 * c_only[5]
    assert c_only[5] < min(c_only[:5])
    r_c = beam_search(without_null, enc.sub_blocks, 1, 1, depth=1, progress=False)
    r_both = beam_search(with_null, enc.sub_blocks, 1, 1, depth=1, progress=False)
    assert r_c.order == [5]
    assert r_both.order != [5]


def test_reuse_lowers_d_and_shares_weights(tokenizer, tmp_path):
    model, proj = seeded_model(seed=1)
    fresh = copy.deepcopy(model)
    enc, disc, calib = setup(model, proj, tokenizer, tmp_path)
    skip = beam_search(disc, enc.sub_blocks, 1, 3, depth=6, progress=False).order
    d_skip = disc(make_schedule(len(enc), skip))
    reuse, trace = reuse_phase(disc, enc.sub_blocks, skip, progress=False)
    assert reuse, "the tiny model should profit from at least one re-use"
    assert trace[-1] < d_skip
    assert all(b <= a for a, b in zip([d_skip] + trace, trace))

    skip_only = apply_plan(copy.deepcopy(fresh), Plan(skip=skip))
    pruned = apply_plan(fresh, Plan(skip=skip, reuse=reuse))
    penc = to_sub_blocks(pruned)
    for i, src in reuse.items():
        assert penc.schedule[i] == src and str(i) not in penc.branches
    # re-used weights are the same storage: no parameter was added
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in skip_only.parameters())
    ptrs = [p.data_ptr() for p in pruned.parameters()]
    assert len(ptrs) == len(set(ptrs))
    # and the pruned model really computes the D that re-use reported
    side = text_side(pruned, proj, tokenizer)
    assert Discrepancy(side, calib)(penc.schedule) == pytest.approx(trace[-1], rel=1e-6)


def run_search(disc, enc, k, depth):
    result = beam_search(disc, enc.sub_blocks, 1, k, depth=depth, progress=False)
    reuse = reuse_phase(disc, enc.sub_blocks, result.order, progress=False)
    return result.order, result.depth_d, result.beams, reuse  # reuse: (map, D trace)


def assert_contract(got, expected, tolerance):
    """The exactness contract (docs/exactness.md): the same decisions, every D within `tolerance`."""
    order, depth_d, beams, (reuse, trace) = got
    assert (order, [[sorted(s) for s, _ in b] for b in beams], reuse) == \
        (expected[0], [[sorted(s) for s, _ in b] for b in expected[2]], expected[3][0])
    flat = lambda r: [*r[1], *(d for b in r[2] for _, d in b), *r[3][1]]  # noqa: E731
    for a, b in zip(flat(got), flat(expected), strict=True):
        assert a == pytest.approx(b, rel=tolerance, abs=0)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_search_meets_the_exactness_contract(tokenizer, tmp_path, k, dtype):
    """Stacking variants changes batch shapes, and kernels may round by shape (AMX CPUs, GPUs): the
    prefix-cached search must make the reference's decisions with every D within the dtype's
    tolerance, whatever its cache budget holds."""
    from skrr.search.compute import TOLERANCE

    model, proj = (m.to(dtype) for m in seeded_model())
    enc, slow, calib = setup(model, proj, tokenizer, tmp_path, fast=False)
    side = slow.text_side
    assert slow.tolerance == TOLERANCE[dtype]
    # a state is 8 x 24 x 32 fp32 = 24 KiB: 0.06 MiB keeps ~2 of them, 0 keeps none
    fast = {mb: PrefixCachedDiscrepancy(side, calib, cache_budget_mb=mb) for mb in (2048, 0.06, 0)}
    expected = run_search(slow, enc, k, 8)
    got = {mb: run_search(disc, enc, k, 8) for mb, disc in fast.items()}
    for result in got.values():
        assert_contract(result, expected, slow.tolerance)
    assert fast[2048].sub_block_evals < slow.sub_block_evals
    assert fast[2048].sub_block_evals <= fast[0.06].sub_block_evals <= fast[0].sub_block_evals
    again = PrefixCachedDiscrepancy(side, calib)
    assert run_search(again, enc, k, 8) == got[2048]  # the same work in the same process: the same bits


def test_margins_are_the_gaps_between_independently_scored_candidates(tokenizer, tmp_path):
    from skrr.search.skip_reuse import relative_gap

    model, proj = seeded_model()
    enc, fast, calib = setup(model, proj, tokenizer, tmp_path)
    ref, n, k = Discrepancy(fast.text_side, calib), len(enc), 2
    result = beam_search(fast, enc.sub_blocks, 1, k, depth=2, progress=False)
    first = sorted(ref(make_schedule(n, [i])) for i in range(n))  # every depth-1 candidate, one by one
    assert result.margins[0]["depth"] == 1
    assert result.margins[0]["keep"] == pytest.approx(relative_gap(first[k - 1], first[k]), rel=1e-4)
    assert result.margins[0]["lead"] == pytest.approx(relative_gap(first[0], first[1]), rel=1e-4)
    assert all(m["keep"] > 0 for m in result.margins)
    margins = []
    reuse, trace = reuse_phase(fast, enc.sub_blocks, result.order, progress=False, margins=margins)
    assert [m["position"] for m in margins] == result.order
    assert [m["chosen"] for m in margins] == [reuse.get(i) for i in result.order]


def test_an_exact_tie_is_reported_as_a_near_tie(tokenizer, tmp_path, caplog, monkeypatch):
    """Two sub-blocks that write nothing: removing either leaves D at exactly 0, so which one a
    search drops first is decided by the index rule alone, and it must say so."""
    from skrr.search.skip_reuse import near_ties

    model, proj = seeded_model()
    with torch.no_grad():
        for i in (3, 8):
            output_weight(model, i).zero_()
    enc, fast, _ = setup(model, proj, tokenizer, tmp_path)
    import logging
    monkeypatch.setattr(logging.getLogger("skrr.search.skip_reuse"), "disabled", False)  # a Hydra app in this worker may have disabled it
    with caplog.at_level("WARNING", logger="skrr.search.skip_reuse"):
        result = beam_search(fast, enc.sub_blocks, 1, 1, depth=2, progress=False)
    assert result.order == [3, 8] and result.depth_d == [0.0, 0.0]
    assert result.margins[0]["keep"] == 0.0 and "depth 1: near-tie" in caplog.text
    ties = near_ties({"skip": result.margins, "reuse": []}, fast.tolerance)
    assert ties and ties[0].startswith("depth 1 (keep margin 0.00e+00)")


# --- prune() and the CLI on the registry's tiny PixArt --------------------------------------------
def skrr_method(**over):
    cfg = OmegaConf.load(REPO / "conf/method/skrr.yaml")
    return OmegaConf.merge(cfg, over)


CALIB = {"source": "builtin", "pool": 200, "size": 12, "seed": 0}


def test_one_search_serves_all_targets(monkeypatch):
    import skrr.search.skip_reuse
    from skrr.prune import prune

    calls = []
    real = skrr.search.skip_reuse.beam_search
    monkeypatch.setattr(skrr.search.skip_reuse, "beam_search", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    plans = prune("tiny_pixart", skrr_method(sparsity=[0.2, 0.4], beam_width=2), CALIB, progress=False)
    assert len(calls) == 1
    low, high = plans
    assert low.sparsity >= 0.2 and high.sparsity >= 0.4
    assert len(low.skip) < len(high.skip) and high.skip[:len(low.skip)] == low.skip
    assert low.info["order"] == high.info["order"]
    again = prune("tiny_pixart", skrr_method(sparsity=[0.2, 0.4], beam_width=2), CALIB, progress=False)
    assert [(p.skip, p.reuse) for p in again] == [(p.skip, p.reuse) for p in plans]


def skrr_prune(tmp_path, *overrides):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "skrr.experiments.cli.prune", "model=tiny_pixart", "method=skrr",
                           "calibration.size=16", "progress=false", f"hydra.run.dir={tmp_path}", *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_writes_a_plan_that_applies(tmp_path, skrr_cache):
    out = skrr_prune(tmp_path, "method.beam_width=2", "method.sparsity=0.3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sparsity:" in out.stdout
    plan = Plan.load(tmp_path / "plan.json")
    assert plan.sparsity >= 0.3 and plan.skip
    from skrr.models import load_text_side

    encoder = load_text_side("tiny_pixart").encoder
    apply_plan(encoder, plan)
    ids = torch.randint(3, 200, (2, 8))
    assert encoder(input_ids=ids).last_hidden_state.shape == (2, 8, 32)


@pytest.mark.parametrize("override,message", [("method.beam_width=0", "method.beam_width must be a whole number >= 1"),
                                               ("method.sparsity=1.0", "sparsity"),
                                               ("method.compute_dtype=float64", "compute_dtype")])
def test_cli_rejects_bad_input(tmp_path, skrr_cache, override, message):
    out = skrr_prune(tmp_path, override)
    assert out.returncode == 2
    errors = [l for l in out.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.glob("*.json"))


def test_fast_cache_follows_in_place_weight_edits(tokenizer, tmp_path):
    """Baselines (LaCo) edit weights in place between calls: cached states must not survive that."""
    model, proj = seeded_model()
    enc, fast, calib = setup(model, proj, tokenizer, tmp_path)
    slow = Discrepancy(fast.text_side, calib)
    parent, variants = make_schedule(len(enc), [3]), [{i: None} for i in (0, 5, 9)]
    assert fast.evaluate(parent, variants) == slow.evaluate(parent, variants)
    with torch.no_grad():
        enc.branches["4"].layer.SelfAttention.o.weight.mul_(0.5)
    assert fast.evaluate(parent, variants) == slow.evaluate(parent, variants)


# --- length buckets: no work on padding nobody reads ------------------------------------------------
def mixed_length_prompts(n=20, seed=4):
    """Captions cut to 1..6 words, so the batches carry very different amounts of padding."""
    words = [p.split() for p in _corpus(n, seed)]
    g = torch.Generator().manual_seed(seed)
    return [" ".join(w[:int(torch.randint(1, 7, (1,), generator=g))]) for w in words]


def test_batches_are_cut_to_the_longest_real_prompt_only_where_a_mask_is_passed(tokenizer):
    from skrr.search.calibration import MIN_TOKEN_ROWS, encoder_batches

    side = text_side(seeded_model()[0], None, tokenizer)
    tokens = side.tokenize(mixed_length_prompts())
    lengths = tokens["attention_mask"].sum(1)
    batches = encoder_batches(tokens, 8)
    rows = torch.cat([b["rows"] for b in batches])
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every prompt once
    assert lengths[rows].tolist() == sorted(lengths.tolist(), reverse=True)  # longest first
    for b in batches:
        assert b["input_ids"].shape[1] == max(lengths[b["rows"]].max(), -(-MIN_TOKEN_ROWS // len(b["rows"])))
        assert torch.equal(b["attend"], tokens["attend"][b["rows"], :b["input_ids"].shape[1]])
    assert not any(tokens["attend"][rows[:8], batches[0]["input_ids"].shape[1]:].flatten())  # only padding was cut
    [null] = encoder_batches(side.tokenize([""]), 1)
    assert null["input_ids"].shape[1] == MIN_TOKEN_ROWS < MAX_LEN
    no_mask = {**tokens, "attention_mask": None, "attend": torch.ones_like(tokens["attend"])}  # SD3/FLUX feeding
    for s, b in zip(range(0, 20, 8), encoder_batches(no_mask, 8)):
        assert b["rows"].tolist() == list(range(s, min(s + 8, 20))) and b["input_ids"].shape[1] == MAX_LEN


def test_cut_batches_give_the_full_length_d_and_the_same_plan(tokenizer, tmp_path):
    """T5's relative position bias makes the cut exact only because masked keys are excluded: the D
    of cut batches equals the full-length D up to float rounding, and the search picks the same plan."""
    model, proj = seeded_model(seed=2)
    side = text_side(model, proj, tokenizer)
    enc = to_sub_blocks(model)
    prompts = mixed_length_prompts()
    discs = {cut: PrefixCachedDiscrepancy(side, build_calibration(side, prompts, cache_dir=tmp_path / str(cut),
                                                                  length_buckets=cut)) for cut in (True, False)}
    assert sum(b["input_ids"].numel() for b in discs[True].batches) < 0.7 * sum(
        b["input_ids"].numel() for b in discs[False].batches)
    variants = [{i: None} for i in range(len(enc))] + [{0: None, 5: None}, {2: 0, 7: None}]
    full, cut = (discs[c].evaluate(list(range(len(enc))), variants) for c in (False, True))
    assert cut == pytest.approx(full, rel=1e-5, abs=1e-9)
    (order, depth_d, _, (reuse, _)), (order_full, depth_d_full, _, (reuse_full, _)) = (
        run_search(discs[c], enc, 2, 6) for c in (True, False))
    assert (order, reuse) == (order_full, reuse_full)
    assert depth_d == pytest.approx(depth_d_full, rel=1e-5)


# --- compute dtype and progress -------------------------------------------------------------------
def test_weights_in_computes_in_fp32_without_touching_the_stored_weights():
    from skrr.search.compute import weights_in

    lin = torch.nn.Linear(16, 8).to(torch.bfloat16)
    stored = [(p.data_ptr(), p.dtype) for p in lin.parameters()]
    x = torch.randn(4, 16)
    with weights_in(torch.float32, lin):
        y = lin(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch.nn.functional.linear(x, lin.weight.float(), lin.bias.float()))
    assert [(p.data_ptr(), p.dtype) for p in lin.parameters()] == stored


def test_choose_compute_dtype():
    from skrr.search.compute import choose_compute_dtype

    assert choose_compute_dtype("auto", torch.float32, "cpu") == (torch.float32, None)
    assert choose_compute_dtype("bfloat16", torch.bfloat16, "cpu") == (torch.bfloat16, None)
    dtype, why = choose_compute_dtype("float32", torch.bfloat16, "cpu")
    assert dtype == torch.float32 and "float32" in why
    with pytest.raises(ValueError, match="compute_dtype"):
        choose_compute_dtype("float64", torch.float32, "cpu")


def test_bf16_model_searched_in_fp32_matches_the_fp32_model(tokenizer, tmp_path):
    """Weights stay bf16; each sub-block computes in fp32: D(dense) is exactly 0, fast meets the
    contract with the reference, and the plan is the one of the same weights held in fp32."""
    model, proj = seeded_model()
    model, proj = model.to(torch.bfloat16), proj.to(torch.bfloat16)
    wide = copy.deepcopy(model).float(), copy.deepcopy(proj).float()
    side = text_side(model, proj, tokenizer)
    enc = to_sub_blocks(model)
    calib = build_calibration(side, _corpus(16, 3), cache_dir=tmp_path / "bf16", compute_dtype=torch.float32)
    fast, slow = PrefixCachedDiscrepancy(side, calib), Discrepancy(side, calib)
    assert fast(list(range(len(enc)))) == 0.0
    expected = run_search(slow, enc, 2, 4)
    assert_contract(run_search(fast, enc, 2, 4), expected, fast.tolerance)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    _, ref, _ = setup(*wide, tokenizer, tmp_path)
    reference = run_search(ref, to_sub_blocks(wide[0]), 2, 4)
    assert expected[0] == reference[0]
    assert expected[1] == pytest.approx(reference[1], rel=1e-6)  # bf16 weights are exact in fp32


@pytest.mark.parametrize("fast", [False, True])
def test_progress_ticks_add_up_to_the_variants(tokenizer, tmp_path, fast):
    model, proj = seeded_model()
    enc, disc, _ = setup(model, proj, tokenizer, tmp_path, fast=fast)
    ticks = []
    disc.evaluate(make_schedule(len(enc), [4]), [{i: None} for i in (0, 3, 7, 11)], ticks.append)
    assert len(ticks) > 4 and sum(ticks) == pytest.approx(4)
    assert disc.throughput() > 0


def test_the_cost_estimate_names_the_compute_dtype_and_its_assumed_gpu_throughput(tokenizer, tmp_path):
    """The logged estimate says which dtype the search computes in and the throughput assumed for it
    on a GPU; float32 (8x fewer assumed TFLOP/s than bfloat16) costs 8x the GPU time for the same work."""
    import re

    from skrr.search.compute import ASSUMED_TFLOPS
    from skrr.search.skip_reuse import _duration, cost_estimate

    model, projection = seeded_model()
    enc, disc, _ = setup(model, projection, tokenizer, tmp_path, fast=False)
    disc.tokens = 10 ** 9  # a paper-sized calibration set: the estimate reads no more than this count
    line = cost_estimate(disc, len(enc), 3, 4)
    assert "computing in float32" in line and f"assumed {ASSUMED_TFLOPS['float32']:g} TFLOP/s effective float32" in line
    assert "an estimate, not measured" in line
    evals = int(re.search(r"<= ([\d,]+) sub-block evaluations", line).group(1).replace(",", ""))
    per_token = sum(sb.num_params for sb in enc.sub_blocks) / len(enc)  # independent of the code's bookkeeping
    seconds = 2 * evals * disc.tokens * per_token / (ASSUMED_TFLOPS["float32"] * 1e12)
    assert seconds > 120 and f"(an estimate, not measured) <= {_duration(seconds)} " in line
    disc.forward.dtype = torch.bfloat16  # only the label and the assumed rate depend on it here
    assert "computing in bfloat16" in cost_estimate(disc, len(enc), 3, 4)
    assert ASSUMED_TFLOPS["bfloat16"] / ASSUMED_TFLOPS["float32"] == 8
