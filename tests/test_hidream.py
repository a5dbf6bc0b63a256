"""HiDream-I1 on its tiny twin: the T5-XXL config (text_encoder_3) feeds T5 exactly as the pipeline's
encode_prompt does and projects it as the transformer does; the Llama's LM head, whose logits the
pipeline throws away, is dropped by every pruned encoder, which still hands the pipeline the same
hidden states, saves without the head and loads with trust_remote_code where skrr is not installed."""
import json

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from safetensors import safe_open
from test_hub_folders import GENERATE, _images, _run_without_skrr

from skrr import Plan, apply_plan, load_pruned, save_pruned
from skrr.encoders.decoder_only import NoLogits
from skrr.encoders.view import find_sub_block_encoder
from skrr.experiments.cli.app import CONF_DIR
from skrr.hub.pruned_io import save_pruned_pipeline
from skrr.models import (
    build_model,
    get_path,
    load_pipeline,
    load_text_side,
    meta_components,
    model_config,
    resolve_pretrained,
)

PROMPTS = ["a red cat on a wooden table", "two dogs near a blue car in the city at night"]
size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


def _stock_pipeline(name):
    """The pipeline exactly as diffusers loads it: its encoders untouched by skrr."""
    return build_model(name).pipeline.load_class().from_pretrained(resolve_pretrained(name), dtype=torch.float32)


def _encode(side, prompts, negative=False):
    t = side.tokenize(prompts, negative=negative)
    with torch.no_grad():
        return side.encode(t["input_ids"], t["attention_mask"]), t["attend"]


def test_t5_config_projects_through_the_transformers_last_caption_projection():
    """At real size (meta) and on the twin, the configured projection is caption_projection[-1], the
    module the transformer applies to the T5 embeddings, and takes T5's width."""
    cfg = model_config("hidream_i1_t5")
    components = meta_components(cfg)
    denoiser, _, inner = cfg.projection.partition(".")
    transformer = components[denoiser]
    assert get_path(transformer, inner) is transformer.caption_projection[-1]
    assert transformer.caption_projection[-1].linear.in_features == components[cfg.text_encoder].config.d_model == 4096
    assert type(components[cfg.text_encoder]).__name__ == "T5EncoderModel" and cfg.tokenizer == "tokenizer_3"
    side = load_text_side("tiny_hidream_i1_t5")
    stock = _stock_pipeline("tiny_hidream_i1_t5").transformer.caption_projection[-1]
    assert torch.equal(side.projection.linear.weight, stock.linear.weight)
    assert side.projection.linear.in_features == side.encoder.config.d_model


def test_t5_feeding_equals_the_pipelines_encode_prompt_bit_for_bit():
    side = load_text_side("tiny_hidream_i1_t5")
    pipe = _stock_pipeline("tiny_hidream_i1_t5")
    length = int(model_config("tiny_hidream_i1_t5").max_length)
    with torch.no_grad():  # negative_prompt None: the pipeline encodes "" for every encoder
        t5, negative_t5, *_ = pipe.encode_prompt(prompt=PROMPTS, prompt_2=None, prompt_3=None, prompt_4=None,
                                                 do_classifier_free_guidance=True, max_sequence_length=length)
    got, attend = _encode(side, PROMPTS)
    null, null_attend = _encode(side, [""], negative=True)
    assert got.shape == t5.shape and torch.equal(got, t5)
    assert torch.equal(null[0], negative_t5[0])
    assert bool(attend.all()) and bool(null_attend.all())  # every block attends all positions, padding included


def test_pruned_t5_saves_without_dense_weights_and_drops_into_the_pipeline(tmp_path):
    side = load_text_side("tiny_hidream_i1_t5")
    dense = size(side.encoder)
    plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    apply_plan(side.encoder, plan, name="tiny_hidream_i1_t5")
    pruned = load_pruned(save_pruned(side.encoder, plan, tmp_path / "t5"))
    assert size(pruned) == size(side.encoder) < dense
    pipe = load_pipeline("tiny_hidream_i1_t5", text_encoder_3=pruned)
    with torch.no_grad():
        embeds = pipe._get_t5_prompt_embeds(PROMPTS, max_sequence_length=int(model_config("tiny_hidream_i1_t5").max_length))
    assert torch.equal(embeds, _encode(side, PROMPTS)[0])


def test_llama_lm_head_is_dropped_and_the_pipeline_still_reads_every_state(tmp_path):
    """skrr loads the Llama in sub-block form without its untied LM head (dense too, as FLUX.2's
    unread tail): the pipeline's own `_get_llama3_prompt_embeds` (which asks the causal LM for
    logits) runs and picks the same states as skrr's feeding of the same plan; saved and loaded
    back, no head weights exist."""
    stock = _stock_pipeline("tiny_hidream_i1").text_encoder_4
    dense, head = size(stock), size(stock.lm_head)
    assert head > 0 and not stock.config.tie_word_embeddings
    pipe = load_pipeline("tiny_hidream_i1")
    llama = pipe.text_encoder_4
    assert isinstance(llama.lm_head, NoLogits) and size(llama) == dense - head
    with torch.no_grad():  # the dense pipeline without its head reads what the stock one reads
        t = load_text_side("tiny_hidream_i1").tokenize(PROMPTS)
        kw = dict(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True)
        assert all(torch.equal(a, b) for a, b in zip(llama(**kw).hidden_states, stock(**kw).hidden_states, strict=True))
    plan = Plan(skip=[1, 2], reuse={2: 0})
    apply_plan(llama, plan, name="tiny_hidream_i1")
    assert find_sub_block_encoder(llama).dropped_params == head
    side = load_text_side("tiny_hidream_i1")
    apply_plan(side.encoder, plan, name="tiny_hidream_i1")
    length = int(model_config("tiny_hidream_i1").max_length)
    with torch.no_grad():
        stacked = pipe._get_llama3_prompt_embeds(PROMPTS, max_sequence_length=length)
    expected = [stacked[k] for k in pipe.transformer.config.llama_layers]
    got, _ = _encode(side, PROMPTS)
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))

    directory = save_pruned(llama, plan, tmp_path / "llama")
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["SkrrLlamaForCausalLM"] and config["auto_map"]["AutoModel"].endswith("SkrrLlamaForCausalLM")
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        assert not [k for k in f.keys() if k.startswith("lm_head")]
    loaded = load_pruned(directory)
    assert type(loaded).__name__ == "SkrrLlamaForCausalLM" and isinstance(loaded.lm_head, NoLogits)
    assert size(loaded) == size(llama) < dense - head
    t = side.tokenize(PROMPTS)
    with torch.no_grad():
        again = loaded(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True)
    assert again.logits.shape[-1] == 0
    assert all(torch.equal(a, stacked[i]) for i, a in enumerate(again.hidden_states[1:]))


def test_pruned_hidream_pipelines_load_without_skrr_and_generate_the_same_image(tmp_path):
    """Either pruned encoder (the Llama, the T5) in a pipeline folder that loads with
    trust_remote_code=True where skrr is not installed, generating what skrr's pipeline generates."""
    kwargs = {**GENERATE, "height": 32, "width": 32, "max_sequence_length": 16}
    jobs, expected = [], {}
    for name, component, cls, plan in (("tiny_hidream_i1", "text_encoder_4", "SkrrLlamaForCausalLM", Plan(skip=[1, 2], reuse={2: 0})),
                                       ("tiny_hidream_i1_t5", "text_encoder_3", "SkrrT5EncoderModel", Plan(skip=[1, 4, 5], reuse={5: 3}))):
        pipe = load_pipeline(name)
        apply_plan(getattr(pipe, component), plan, name=name)
        save_pruned_pipeline(pipe, component, plan, tmp_path / name)
        expected[name] = _images(pipe, ["a red cat"], kwargs)
        index = json.loads((tmp_path / name / "model_index.json").read_text())
        assert index[component] == ["modeling_skrr", cls]
        jobs.append({"kind": "pipeline", "dir": str(tmp_path / name), "component": component, "prompts": ["a red cat"],
                     "kwargs": kwargs, "out": str(tmp_path / f"{name}.npy")})
    out = _run_without_skrr(jobs, tmp_path)
    assert "HiDreamImagePipeline SkrrLlamaForCausalLM" in out and "HiDreamImagePipeline SkrrT5EncoderModel" in out
    for name, image in expected.items():
        got = np.load(tmp_path / f"{name}.npy")
        assert got.shape == image.shape and np.isfinite(got).all() and (got == image).all()


def test_hidream_experiments_compose():
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        real = compose(config_name="run", overrides=["experiment=table1_hidream_i1_t5"])
        assert real.model.name == "hidream_i1_t5" and real.calibration.source == "coco"
        assert list(real.sparsity) == [0.24, 0.32, 0.40]
        for name in ("hidream_i1", "hidream_i1_t5"):
            tiny = compose(config_name="run", overrides=[f"experiment=tiny_table1_{name}"])
            assert tiny.model.name == f"tiny_{name}" and tiny.calibration.source == "builtin"
            assert tiny.eval.prompts.geneval_generated == 1  # the twin renders 128x128: a short GenEval suite
