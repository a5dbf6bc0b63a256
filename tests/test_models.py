"""Model registry: the encoder is fed exactly as each pipeline's own encode_prompt feeds it, and
the real models are known from shipped configs on the meta device."""
import json
from pathlib import Path

import pytest
import torch

from skrr.encoders.view import count_params
from skrr.models import available_models, load_pipeline, load_text_side, meta_components, model_config, read_from

PROMPTS = ["a red cat sitting on a wooden table near the window", "two dogs", ""]


def _encode(side, prompts):
    t = side.tokenize(prompts)
    with torch.no_grad():
        return t, side.encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"])[0]


def test_tiny_pixart_tokenize_matches_encode_prompt():
    side, pipe = load_text_side("tiny_pixart"), load_pipeline("tiny_pixart")
    t, embeds = _encode(side, PROMPTS)
    with torch.no_grad():
        expected, mask, _, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=48)
    assert torch.equal(embeds, expected)
    assert torch.equal(t["attention_mask"], mask) and torch.equal(t["attend"], mask.bool())
    assert 0 < int(mask.sum()) < mask.numel()  # padding exists and is masked
    assert side.projection is not None and side.preprocess is not None


def test_tiny_sd3_tokenize_matches_t5_prompt_embeds():
    side, pipe = load_text_side("tiny_sd3"), load_pipeline("tiny_sd3")
    t, embeds = _encode(side, PROMPTS)
    with torch.no_grad():
        expected = pipe._get_t5_prompt_embeds(PROMPTS, max_sequence_length=32)
    assert torch.equal(embeds, expected)
    assert t["attention_mask"] is None and bool(t["attend"].all())  # SD3 attends to every token


def test_tiny_flux_tokenize_matches_encode_prompt():
    side, pipe = load_text_side("tiny_flux"), load_pipeline("tiny_flux")
    _, embeds = _encode(side, PROMPTS)
    with torch.no_grad():
        expected, _, _ = pipe.encode_prompt(PROMPTS, prompt_2=None, max_sequence_length=32)
    assert torch.equal(embeds, expected)
    assert side.encoder is not pipe.text_encoder_2  # loaded on its own, without the pipeline


@pytest.mark.parametrize("name,encoder", [("pixart_sigma", "text_encoder"), ("sd3_medium", "text_encoder_3"),
                                          ("flux_dev", "text_encoder_2")])
def test_real_models_from_shipped_configs_on_meta(name, encoder):
    cfg = model_config(name)
    assert cfg.text_encoder == encoder
    parts = meta_components(cfg)
    assert all(p.is_meta for m in parts.values() for p in m.parameters())
    assert count_params(parts[encoder]) == 4_762_310_656  # all three prune the same T5-v1.1-XXL


def test_model_registry_errors():
    assert {"pixart_sigma", "tiny_pixart", "tiny_sd3", "tiny_flux"} <= set(available_models())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        model_config("nope")
    with pytest.raises(ValueError, match="no meta_configs"):
        meta_components(model_config("tiny_pixart"))


TWINS = ["tiny_pixart", "tiny_sd3", "tiny_flux", "toyworld"]


@pytest.mark.parametrize("name", TWINS)
def test_text_side_reads_the_projection_without_building_the_denoiser(name, monkeypatch):
    from skrr.models import get_path

    pipe = load_pipeline(name)
    reference = get_path(pipe, model_config(name).projection)
    denoiser_cls = type(pipe.transformer)

    def refuse(*args, **kwargs):
        raise AssertionError(f"{denoiser_cls.__name__} was instantiated")

    monkeypatch.setattr(denoiser_cls, "__init__", refuse)
    side = load_text_side(name)
    assert type(side.projection) is type(reference)
    expected = reference.state_dict()
    assert side.projection.state_dict().keys() == expected.keys()
    assert all(torch.equal(t, expected[k]) for k, t in side.projection.state_dict().items())
    x = torch.randn(2, 5, reference.state_dict()[next(iter(expected))].shape[1])
    with torch.no_grad():
        assert torch.equal(side.projection(x), reference(x))


def test_text_side_opens_only_the_projection_shard_and_casts_after_reading(tmp_path, monkeypatch):
    import safetensors

    from skrr.models import SAFETENSORS_INDEX, resolve_pretrained

    cfg = model_config("tiny_pixart")
    root = tmp_path / "pipe"
    load_pipeline(cfg).save_pretrained(root)  # fp32, the denoiser re-saved in many shards below
    pipe = load_pipeline(cfg)
    pipe.transformer.save_pretrained(root / "transformer", max_shard_size="20KB")
    (root / "transformer" / "diffusion_pytorch_model.safetensors").unlink(missing_ok=True)
    shards = json.loads((root / "transformer" / SAFETENSORS_INDEX).read_text())["weight_map"]
    holding = {f for k, f in shards.items() if k.startswith("caption_projection.")}
    assert len(set(shards.values())) > len(holding) + 2  # the test means something: many other shards

    opened, real_open = [], safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda f, *a, **k: opened.append(Path(f).name) or real_open(f, *a, **k))
    local = read_from(cfg, root)
    assert resolve_pretrained(local) == str(root)
    side = load_text_side(local, dtype=torch.bfloat16)
    denoiser_shards = [f for f in opened if f.startswith("diffusion_pytorch_model")]
    assert set(denoiser_shards) == holding
    ref = pipe.transformer.caption_projection.state_dict()
    assert all(t.dtype == torch.bfloat16 and torch.equal(t, ref[k].to(torch.bfloat16))
               for k, t in side.projection.state_dict().items())


def test_text_side_fails_clearly_on_a_dir_without_a_pipeline(tmp_path):
    local = read_from("tiny_pixart", tmp_path)
    with pytest.raises(FileNotFoundError, match="model_index.json is missing"):
        load_text_side(local)
