"""Wan (text-to-video, umT5-XXL) and LTX-2 (audio-video, Gemma-3 read at every layer) on their tiny
twins: skrr's feeding gives exactly the embeddings the pipeline's own encode_prompt gives, the
sub-block view is the stock encoder bit for bit, D's features are what the denoiser receives, a pruned
encoder drops into the pipeline and generates a video, and skrr-run makes a row with every smoke metric
(scored on the one frame generation asks for)."""
import copy

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from skrr import Plan, apply_plan, load_pruned, save_pruned
from skrr.encoders.view import to_sub_blocks, total_params
from skrr.errors import InputError
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.cli.run import run_job
from skrr.models import build_model, load_pipeline, load_text_side, meta_components, model_config, resolve_pretrained

# an HTML entity and doubled spaces: the pipeline's prompt_clean changes these, and so must the feeding
PROMPTS = ["a red cat on a wooden   table", "two dogs &amp; a blue car in the city at night"]


def _stock_pipeline():
    return build_model("tiny_wan").pipeline.load_class().from_pretrained(resolve_pretrained("tiny_wan"),
                                                                         dtype=torch.float32)


def _pipeline_embeds(pipe, prompts):
    """(what the denoiser gets per prompt: the real tokens' rows, the negative prompt's), asserting the
    padding rows the pipeline hands on are zeros whatever the encoder."""
    length = int(model_config("tiny_wan").max_length)
    with torch.no_grad():
        embeds, neg = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, max_sequence_length=length)
    rows = []
    for e in list(embeds) + [neg[0]]:
        real = int(e.abs().sum(-1).gt(0).sum())
        assert not e[real:].any()
        rows.append(e[:real])
    return rows[:-1], rows[-1]


def _ours(side, prompts, negative=False):
    t = side.tokenize(prompts, negative=negative)
    with torch.no_grad():
        f = side.encode(t["input_ids"], t["attention_mask"])
    return [row[a] for row, a in zip(f, t["attend"])]


def test_feeding_equals_the_pipelines_encode_prompt():
    side = load_text_side("tiny_wan")
    expected, expected_null = _pipeline_embeds(_stock_pipeline(), PROMPTS)
    got = _ours(side, PROMPTS)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    assert torch.equal(_ours(side, [""], negative=True)[0], expected_null)


def test_umt5_sub_block_view_is_the_stock_encoder_and_each_layer_keeps_its_own_bias():
    stock = _stock_pipeline().text_encoder
    side = load_text_side("tiny_wan")
    t = side.tokenize(PROMPTS)
    with torch.no_grad():
        expected = stock(t["input_ids"], t["attention_mask"]).last_hidden_state
        view = to_sub_blocks(side.encoder)
        got = side.encoder(t["input_ids"], t["attention_mask"]).last_hidden_state
    assert torch.equal(got, expected)
    assert len(view) == 2 * stock.config.num_layers
    # every attention sub-block holds its layer's position bias table: skipping it frees that table
    biases = [view.branches[str(i)].layer.SelfAttention.relative_attention_bias for i in range(0, len(view), 2)]
    assert len({id(b) for b in biases}) == stock.config.num_layers
    assert total_params(side.encoder) == sum(p.numel() for p in stock.parameters())


def test_pruned_encoder_saves_without_dense_weights_and_generates_a_video(tmp_path):
    side = load_text_side("tiny_wan")
    dense = copy.deepcopy(side.encoder)
    plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    apply_plan(side.encoder, plan, name=side.cfg.name)
    pruned = load_pruned(save_pruned(side.encoder, plan, tmp_path / "pruned"))
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert type(pruned).__name__ == "SkrrUMT5EncoderModel"
    assert size(pruned) == size(side.encoder) < size(dense)
    pipe = load_pipeline("tiny_wan", text_encoder=pruned)
    got, _ = _pipeline_embeds(pipe, PROMPTS)
    assert all(torch.equal(g, e) for g, e in zip(got, _ours(side, PROMPTS)))
    side.encoder = dense
    assert not all(torch.allclose(g, e) for g, e in zip(got, _ours(side, PROMPTS)))
    with torch.no_grad():
        video = pipe(prompt=PROMPTS[:1], num_inference_steps=2, height=16, width=16, num_frames=5, output_type="np",
                     max_sequence_length=int(model_config("tiny_wan").max_length),
                     generator=torch.Generator().manual_seed(0)).frames
    assert video.shape == (1, 5, 16, 16, 3) and bool(torch.isfinite(torch.from_numpy(video)).all())


def test_a_read_layer_that_does_not_exist_fails_naming_the_key_before_loading(monkeypatch):
    from transformers import UMT5EncoderModel

    def refuse(*a, **k):
        raise AssertionError("weights were loaded")

    resolve_pretrained("tiny_wan")
    monkeypatch.setattr(UMT5EncoderModel, "from_pretrained", refuse)
    cfg = OmegaConf.create({**OmegaConf.to_container(model_config("tiny_wan")), "hidden_state": 30})
    with pytest.raises(InputError, match=r"^model.hidden_state: hidden state 30 does not exist in a 4-layer"):
        load_text_side(cfg)


def test_meta_build_counts_the_public_umt5_xxl():
    encoder = meta_components(model_config("wan"))["text_encoder"]
    to_sub_blocks(encoder)
    # 256,384 x 4,096 shared embeddings + 24 layers of (4 attention projections, a 32 x 64 bias table,
    # gated FFN of 3 x 4,096 x 10,240, two norms) + the final norm: counted by hand from the config
    layer = 4 * 4096 * 4096 + 32 * 64 + 3 * 4096 * 10240 + 2 * 4096
    assert total_params(encoder) == 256384 * 4096 + 24 * layer + 4096


@pytest.mark.parametrize("model", ["tiny_wan", "tiny_ltx2"])
def test_skrr_run_smoke_row_has_every_metric(tmp_path, model):
    smoke = ["method=skrr", "method.beam_width=1", "sparsity=[0.3]", "calibration.size=4", "progress=false",
             "eval.prompts.text=[a red cube,two blue balls]", "eval.prompts.geneval_generated=1"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[f"paths.root={tmp_path}", f"model={model}", "eval=smoke", *smoke])
    (row,) = run_job(cfg, "t")
    assert set(row["metrics"]) == {"fid", "clip", "dreamsim", "geneval", "efficiency"}
    assert row["sparsity"] >= 0.3 and row["plan"]["path"]


def _ltx2_pipeline():
    return build_model("tiny_ltx2").pipeline.load_class().from_pretrained(resolve_pretrained("tiny_ltx2"),
                                                                          dtype=torch.float32)


def _ltx2_prompt_embeds(pipe, prompts):
    """(stacked states and mask of the prompts, the same of the negative prompt) from encode_prompt."""
    with torch.no_grad():
        embeds, mask, neg, neg_mask = pipe.encode_prompt(prompts, do_classifier_free_guidance=True,
                                                         max_sequence_length=int(model_config("tiny_ltx2").max_length))
    return embeds, mask, neg, neg_mask


def test_ltx2_feeding_equals_the_pipelines_encode_prompt_through_the_sub_block_view():
    side = load_text_side("tiny_ltx2")
    pipe = _ltx2_pipeline()
    embeds, mask, neg, neg_mask = _ltx2_prompt_embeds(pipe, PROMPTS)
    t, null = side.tokenize(PROMPTS), side.tokenize([""], negative=True)
    neg, neg_mask = neg[:1], neg_mask[:1]  # the pipeline repeats "" for each prompt
    assert torch.equal(t["attention_mask"], mask) and torch.equal(null["attention_mask"], neg_mask)
    assert not mask[:, 0].any() and mask[:, -1].all()  # padded on the left, as the pipeline pads
    with torch.no_grad():
        assert torch.equal(side.encode(t["input_ids"], t["attention_mask"]), embeds)  # the stock encoder
        view = to_sub_blocks(side.encoder)  # the sub-block view: 2 x 4 sub-blocks, vision tower dropped
        assert len(view) == 8 and not hasattr(side.encoder.model, "vision_tower")
        assert torch.equal(side.encode(t["input_ids"], t["attention_mask"]), embeds)
        assert torch.equal(side.encode(null["input_ids"], null["attention_mask"]), neg)
        pipe.text_encoder = side.encoder  # the pipeline's own call still runs on the view
        assert torch.equal(_ltx2_prompt_embeds(pipe, PROMPTS)[0], embeds)


def test_ltx2_d_features_are_what_the_denoiser_receives():
    from skrr.search.compute import Forward

    side = load_text_side("tiny_ltx2")
    pipe = _ltx2_pipeline()
    embeds, mask, _, _ = _ltx2_prompt_embeds(pipe, PROMPTS)
    t = side.tokenize(PROMPTS)
    with torch.no_grad():
        video, audio, _ = pipe.connectors(embeds, mask, padding_side=pipe.tokenizer.padding_side)
        expected = torch.cat([pipe.transformer.caption_projection(video),
                              pipe.transformer.audio_caption_projection(audio)], dim=-1)
        got = Forward(side)(t["input_ids"], t["attention_mask"])
    assert got.shape == expected.shape and torch.equal(got, expected)


def test_ltx2_pruned_encoder_generates_a_video():
    plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    pipe = load_pipeline("tiny_ltx2", plan=plan)
    dense_embeds = _ltx2_prompt_embeds(_ltx2_pipeline(), PROMPTS[:1])[0]
    assert not torch.allclose(_ltx2_prompt_embeds(pipe, PROMPTS[:1])[0], dense_embeds)
    with torch.no_grad():
        out = pipe(prompt=PROMPTS[:1], num_inference_steps=2, height=32, width=32, num_frames=9, output_type="np",
                   max_sequence_length=int(model_config("tiny_ltx2").max_length),
                   generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 9, 32, 32, 3) and bool(torch.isfinite(torch.from_numpy(out.frames)).all())


def test_ltx2_meta_build_counts_gemma3_12b():
    encoder = meta_components(model_config("ltx2"))["text_encoder"]
    whole = sum(p.numel() for p in encoder.parameters())
    view = to_sub_blocks(encoder)
    # Gemma-3-12B as published: 12,187,325,040 parameters, of which the vision tower and projector (the
    # head is tied to the embeddings) are dropped and the language tower is counted
    assert whole == 12_187_325_040
    assert view.dropped_params == whole - total_params(encoder) and total_params(encoder) == 11_766_034_176


def test_ltx2_a_read_layer_that_does_not_exist_fails_naming_the_key():
    resolve_pretrained("tiny_ltx2")
    cfg = OmegaConf.create({**OmegaConf.to_container(model_config("tiny_ltx2")),
                            "readout": {"hidden_states": [0, 1, 2, 3, 4, 5], "combine": "interleave"}})
    with pytest.raises(InputError, match=r"^model.readout.hidden_states: hidden state 5 does not exist in a 4-layer"):
        load_text_side(cfg)


class _Zero(torch.nn.Module):
    """A residual branch that adds nothing (a skipped sub-block, written into the stock layer)."""

    def forward(self, hidden_states, *args, **kwargs):
        return (torch.zeros_like(hidden_states), None) if kwargs or args else torch.zeros_like(hidden_states)


@pytest.mark.parametrize("skip", [[0], [3], [0, 5, 7]])
def test_ltx2_d_equals_the_stock_models_states_through_the_connectors(skip):
    """D = MSE(prompts) + MSE(null) of what the denoiser receives, computed from the pipeline's own
    encode_prompt on a stock Gemma-3 with the skipped branches written in, through its connectors."""
    from skrr.plan import make_schedule
    from skrr.search.calibration import build_calibration
    from skrr.search.discrepancy import Discrepancy
    from skrr.search.prefix_cache import PrefixCachedDiscrepancy

    dense, pruned = _ltx2_pipeline(), _ltx2_pipeline()
    layers = pruned.text_encoder.model.language_model.layers
    for i in skip:
        setattr(layers[i // 2], "self_attn" if i % 2 == 0 else "mlp", _Zero())
    expected = 0.0
    for texts in (PROMPTS, [""]):
        features = []
        for pipe in (dense, pruned):
            embeds, mask, _, _ = _ltx2_prompt_embeds(pipe, texts)
            with torch.no_grad():
                video, audio, _ = pipe.connectors(embeds, mask, padding_side="left")
                features.append(torch.cat([pipe.transformer.caption_projection(video),
                                           pipe.transformer.audio_caption_projection(audio)], -1).double())
        expected += float(((features[0] - features[1]) ** 2).mean())  # every position reaches the denoiser
    side = load_text_side("tiny_ltx2")
    calib = build_calibration(side, PROMPTS, batch_size=2)
    schedule = make_schedule(8, skip, {})
    reference = Discrepancy(side, calib)(schedule)
    assert expected > 0 and reference == PrefixCachedDiscrepancy(side, calib)(schedule)
    assert reference == pytest.approx(expected, rel=1e-4)


def test_wan_pruned_umt5_loads_without_skrr_and_gives_the_same_states(tmp_path):
    """The pruned umT5 folder carries its modelling file: it loads with trust_remote_code=True in a
    Python that cannot import skrr and gives what load_pruned gives, bit for bit."""
    from test_hub_folders import _run_without_skrr

    side = load_text_side("tiny_wan")
    plan = Plan(skip=[0, 3, 6], reuse={3: 1})
    apply_plan(side.encoder, plan, name="tiny_wan")
    save_pruned(side.encoder, plan, tmp_path / "umt5")
    t = side.tokenize(PROMPTS)
    jobs = [{"kind": "encoder", "dir": str(tmp_path / "umt5"), "ids": t["input_ids"].tolist(),
             "mask": t["attention_mask"].tolist(), "out": str(tmp_path / "umt5.pt")}]
    assert "SkrrUMT5EncoderModel" in _run_without_skrr(jobs, tmp_path)
    with torch.no_grad():
        expected = load_pruned(tmp_path / "umt5")(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
    assert torch.equal(torch.load(tmp_path / "umt5.pt")["last"], expected.last_hidden_state)


def test_ltx2_pruned_gemma3_saves_without_vision_tower_and_loads_without_skrr(tmp_path):
    """The pruned Gemma-3 folder holds the kept language tower only; it loads with trust_remote_code=True
    where skrr cannot be imported and gives every hidden state the pipeline reads, bit for bit; a pruned
    pipeline folder generates the same video as the pipeline it was saved from."""
    from diffusers import DiffusionPipeline
    from test_hub_folders import _run_without_skrr

    from skrr.hub.pruned_io import save_pruned_pipeline

    plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    pipe = load_pipeline("tiny_ltx2", plan=plan)
    save_pruned(pipe.text_encoder, plan, tmp_path / "gemma3")
    save_pruned_pipeline(pipe, "text_encoder", plan, tmp_path / "ltx2")
    loaded = load_pruned(tmp_path / "gemma3")
    assert type(loaded).__name__ == "SkrrGemma3ForConditionalGeneration" and not hasattr(loaded.model, "vision_tower")
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in pipe.text_encoder.parameters())
    t = load_text_side("tiny_ltx2").tokenize(PROMPTS)
    jobs = [{"kind": "encoder", "dir": str(tmp_path / "gemma3"), "ids": t["input_ids"].tolist(),
             "mask": t["attention_mask"].tolist(), "out": str(tmp_path / "gemma3.pt")}]
    assert "SkrrGemma3ForConditionalGeneration" in _run_without_skrr(jobs, tmp_path)
    with torch.no_grad():
        hidden = loaded(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True).hidden_states
    got = torch.load(tmp_path / "gemma3.pt")["hidden"]
    assert len(got) == len(hidden) == 5 and all(torch.equal(a, b) for a, b in zip(got, hidden))
    kwargs = dict(prompt=PROMPTS[:1], num_inference_steps=2, height=32, width=32, num_frames=1, output_type="np",
                  max_sequence_length=int(model_config("tiny_ltx2").max_length))
    with torch.no_grad():
        expected = pipe(generator=torch.Generator().manual_seed(0), **kwargs).frames
        video = DiffusionPipeline.from_pretrained(tmp_path / "ltx2", trust_remote_code=True)(
            generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert video.shape == (1, 1, 32, 32, 3) and (video == expected).all()
