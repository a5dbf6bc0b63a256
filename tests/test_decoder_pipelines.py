"""Sana, Lumina 2, Qwen-Image, FLUX.2, FLUX.2-klein, Z-Image and Chroma on their tiny twins: skrr's feeding gives exactly the embeddings
the pipeline's own encode_prompt gives (stock encoder, no sub-block view), a pruned encoder saved
without dense weights drops into the pipeline and generates, and skrr-run makes a row with every
smoke metric."""
import copy
from inspect import signature

import pytest
import torch
from hydra import compose, initialize_config_dir

from skrr import Plan, apply_plan, load_pruned, save_pruned
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.cli.run import run_job
from skrr.models import build_model, load_pipeline, load_text_side, model_config, resolve_pretrained

TWINS = ["tiny_sana", "tiny_lumina2", "tiny_qwen_image", "tiny_flux2", "tiny_flux2_klein", "tiny_z_image", "tiny_chroma"]
PROMPTS = ["a red cat on a wooden table", "two dogs near a blue car in the city at night"]


def _stock_pipeline(name):
    """The pipeline exactly as diffusers loads it: its encoder untouched by skrr."""
    return build_model(name).pipeline.load_class().from_pretrained(resolve_pretrained(name), dtype=torch.float32)


def _pipeline_embeds(pipe, name, prompts):
    """(per-prompt embeddings the denoiser gets, the same for the negative prompt or None)."""
    with torch.no_grad():
        length = int(model_config(name).max_length)
        if name in ("tiny_flux2", "tiny_flux2_klein"):  # stacked hidden states; the denoiser reads every position
            embeds, _ = pipe.encode_prompt(prompts, max_sequence_length=length)
            return list(embeds), [pipe.encode_prompt([""], max_sequence_length=length)[0][0]]
        if name == "tiny_z_image":  # hidden state -2 of the real tokens, as a list per prompt
            return pipe._encode_prompt(list(prompts), max_sequence_length=length), pipe._encode_prompt([""], max_sequence_length=length)
        if name == "tiny_chroma":  # T5 with the mask; the denoiser attends the prompt and its first padding token
            rows = [pipe._get_t5_prompt_embeds(p, max_sequence_length=length) for p in (prompts, [""])]
            return [[e[m.bool()] for e, m in zip(*r)] for r in rows]
        if name == "tiny_qwen_image":
            embeds, mask = pipe.encode_prompt(prompts)
            rows = [e if mask is None else e[m.bool()] for e, m in zip(embeds, mask if mask is not None else embeds)]
            neg, neg_mask = pipe.encode_prompt([""])
            return rows, [neg[0] if neg_mask is None else neg[0][neg_mask[0].bool()]]
        kw = {}
        if name == "tiny_sana":  # __call__ passes its default instruction on; encode_prompt's own default is none
            kw["complex_human_instruction"] = signature(pipe.__call__).parameters["complex_human_instruction"].default
        embeds, mask, neg, neg_mask = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, **kw)
        return [e[m.bool()] for e, m in zip(embeds, mask)], [neg[0][neg_mask[0].bool()]]


def _ours(side, prompts, negative=False):
    t = side.tokenize(prompts, negative=negative)
    with torch.no_grad():
        f = side.encode(t["input_ids"], t["attention_mask"])
    return [row[a] for row, a in zip(f, t["attend"])]


@pytest.mark.parametrize("name", TWINS)
def test_feeding_equals_the_pipelines_encode_prompt(name):
    side = load_text_side(name)
    expected, expected_null = _pipeline_embeds(_stock_pipeline(name), name, PROMPTS)
    got = _ours(side, PROMPTS)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    assert torch.equal(_ours(side, [""], negative=True)[0], expected_null[0])


def test_sana_feeds_the_instruction_but_not_to_the_negative_prompt():
    side = load_text_side("tiny_sana")
    t, null = side.tokenize(PROMPTS), side.tokenize([""], negative=True)
    assert t["input_ids"].shape[1] > 300 and null["input_ids"].shape[1] == 300
    assert int(t["attend"][0].sum()) < int(t["attention_mask"][0].sum())  # the instruction never reaches the denoiser


def test_qwen_image_drops_exactly_the_template_prefix():
    side = load_text_side("tiny_qwen_image")
    t = side.tokenize(["a red cat"])
    kept = side.tokenizer.convert_ids_to_tokens(t["input_ids"][0][t["attend"][0]])
    assert kept[:3] == ["a", "Ġred", "Ġcat"] and kept[3] == "<|im_end|>"


def _prune(side):
    plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    apply_plan(side.encoder, plan, name=side.cfg.name)
    return plan


@pytest.mark.parametrize("name", TWINS)
def test_pruned_encoder_saves_without_dense_weights_and_generates(name, tmp_path):
    side = load_text_side(name)
    dense = copy.deepcopy(side.encoder)
    plan = _prune(side)
    directory = save_pruned(side.encoder, plan, tmp_path / "pruned")
    pruned = load_pruned(directory)
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert size(pruned) == size(side.encoder) < size(dense)
    pipe = load_pipeline(name, text_encoder=pruned)
    assert pipe.text_encoder is pruned
    got, _ = _pipeline_embeds(pipe, name, PROMPTS)
    assert all(torch.equal(g, e) for g, e in zip(got, _ours(side, PROMPTS)))
    side.encoder = dense
    assert not all(torch.allclose(g, e) for g, e in zip(got, _ours(side, PROMPTS)))
    hw = int(model_config(name).sampler.height)
    binning = {"use_resolution_binning": False} if name == "tiny_sana" else {}  # binning knows real sizes only
    with torch.no_grad():
        length = {"max_sequence_length": int(model_config(name).max_length)} if name not in TWINS[:3] else {}
        image = pipe(prompt=PROMPTS[:1], num_inference_steps=2, height=hw, width=hw, output_type="np", **length,
                     generator=torch.Generator().manual_seed(0), **binning).images
    assert image.shape == (1, hw, hw, 3) and bool(torch.isfinite(torch.from_numpy(image)).all())


SMOKE = ["method=skrr", "method.beam_width=1", "sparsity=[0.3]", "calibration.size=4", "progress=false",
         "eval.prompts.text=[a red cube,two blue balls]", "eval.prompts.geneval_generated=1"]


@pytest.mark.parametrize("name", TWINS)
def test_skrr_run_smoke_row_has_every_metric(name, tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[f"paths.root={tmp_path}", f"model={name}", "eval=smoke", *SMOKE])
    (row,) = run_job(cfg, "t")
    assert set(row["metrics"]) == {"fid", "clip", "dreamsim", "geneval", "efficiency"}
    assert row["sparsity"] >= 0.3 and row["plan"]["path"]
    eff = row["metrics"]["efficiency"]
    assert eff["pipeline_params"] > 0
