"""Model registry: the encoder is fed exactly as each pipeline's own encode_prompt feeds it, and
the real models are known from shipped configs on the meta device."""
import pytest
import torch

from skrr.models import available_models, count_params, load_pipeline, load_text_side, meta_components, model_config

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
