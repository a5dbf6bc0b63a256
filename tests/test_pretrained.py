"""The pruned encoder as a registered transformers model: AutoModel loads what save_pruned
writes, folders of the first format still load, and a saved pipeline folder loads with the
plain diffusers pipeline class."""
import json
from pathlib import Path

import pytest
import torch
import transformers

import skrr
from skrr import Plan, apply_plan, load_pruned, save_pruned

FORMAT1 = Path(__file__).parent / "data" / "pruned_format1_t5"  # written by save_pruned before the format change
PLAN = {"skip": [0, 3, 4, 5, 6, 7, 9, 10], "reuse": {4: 2, 9: 11}}


def _bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _save(model, tmp_path):
    plan = Plan(skip=list(PLAN["skip"]), reuse=dict(PLAN["reuse"]))
    apply_plan(model, plan, name="tiny")
    return plan, save_pruned(model, plan, tmp_path / "pruned")


def test_automodel_loads_the_pruned_encoder_with_equal_outputs_and_pruned_bytes(tiny_t5, t5_inputs, tmp_path):
    ids, mask = t5_inputs
    dense_bytes = _bytes(tiny_t5)
    plan, directory = _save(tiny_t5, tmp_path)
    auto = transformers.AutoModel.from_pretrained(directory)
    assert type(auto) is skrr.SkrrT5EncoderModel
    assert json.loads((directory / "config.json").read_text())["model_type"] == "skrr_t5"
    with torch.no_grad():
        assert torch.equal(auto(input_ids=ids, attention_mask=mask)[0], load_pruned(directory)(input_ids=ids, attention_mask=mask)[0])
        assert torch.equal(auto(input_ids=ids, attention_mask=mask)[0], tiny_t5(input_ids=ids, attention_mask=mask)[0])
    assert plan.sparsity > 0.4
    assert _bytes(auto) == round((1 - plan.sparsity) * dense_bytes)
    assert sorted(int(k) for k in auto.encoder.branches) == sorted(set(range(12)) - set(PLAN["skip"]))


def test_dtype_and_save_pretrained_round_trip(tiny_t5, t5_inputs, tmp_path):
    ids, mask = t5_inputs
    _, directory = _save(tiny_t5, tmp_path)
    half = transformers.AutoModel.from_pretrained(directory, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    half.save_pretrained(tmp_path / "again")  # a loaded pruned model saves like any model
    again = transformers.AutoModel.from_pretrained(tmp_path / "again")
    assert again.encoder.schedule == tiny_t5.encoder.schedule
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids, attention_mask=mask)[0], half(input_ids=ids, attention_mask=mask)[0])


def test_building_from_a_config_allocates_only_the_kept_weights(tiny_t5, tmp_path):
    dense_params = sum(p.numel() for p in tiny_t5.parameters())
    plan, directory = _save(tiny_t5, tmp_path)
    config = transformers.AutoConfig.from_pretrained(directory)
    fresh = skrr.SkrrT5EncoderModel(config)  # random init, as any model built from a config
    assert not any(p.is_meta for p in fresh.parameters())
    assert sum(p.numel() for p in fresh.parameters()) == round((1 - plan.sparsity) * dense_params)


def test_a_plan_validates_against_the_pruned_config_like_the_dense_one(tiny_t5, tmp_path):
    from skrr.plan import config_hash

    dense_hash = config_hash(tiny_t5.config)
    _, directory = _save(tiny_t5, tmp_path)
    assert config_hash(transformers.AutoConfig.from_pretrained(directory)) == dense_hash


def test_clip_text_model_loads_through_automodel(tiny_clip, tmp_path):
    ids = torch.randint(2, 400, (2, 10), generator=torch.Generator().manual_seed(0))
    plan = Plan(skip=[3, 0], reuse={0: 2})
    apply_plan(tiny_clip, plan)
    directory = save_pruned(tiny_clip, plan, tmp_path / "clip")
    auto = transformers.AutoModel.from_pretrained(directory)
    assert type(auto) is skrr.SkrrCLIPTextModel
    with torch.no_grad():
        assert torch.equal(auto(input_ids=ids).last_hidden_state, tiny_clip(input_ids=ids).last_hidden_state)


def test_folder_written_by_the_first_format_still_loads():
    expected = torch.load(FORMAT1 / "expected_output.pt")  # outputs of the model that was saved
    model = load_pruned(FORMAT1)
    assert isinstance(model, skrr.SkrrT5EncoderModel)
    assert model.encoder.schedule == [0, None, 0, 3]
    with torch.no_grad():
        out = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]).last_hidden_state
    assert torch.allclose(out, expected["last_hidden_state"], atol=1e-5)  # made with another thread count


def test_a_config_naming_another_architecture_is_a_clear_error(tiny_t5, tmp_path):
    tiny_t5.save_pretrained(tmp_path / "dense")
    Plan(skip=[1]).save(tmp_path / "dense" / "plan.json")
    with pytest.raises(ValueError, match="not a skrr pruned encoder"):
        load_pruned(tmp_path / "dense")


def test_saved_pipeline_loads_with_its_pruned_encoder_and_generates(tmp_path):
    from diffusers import PixArtSigmaPipeline

    from skrr.hub.pruned_io import save_pruned_pipeline
    from skrr.models import load_pipeline

    pipe = load_pipeline("tiny_pixart")
    plan = Plan(skip=[1, 2, 5])
    apply_plan(pipe.text_encoder, plan)
    directory = save_pruned_pipeline(pipe, "text_encoder", plan, tmp_path / "pipeline")
    assert json.loads((directory / "model_index.json").read_text())["text_encoder"] == ["modeling_skrr", "SkrrT5EncoderModel"]
    assert type(pipe.text_encoder) is transformers.T5EncoderModel  # the caller's pipeline is left as it was
    # with skrr: the registered class, passed as the component (no remote code runs)
    loaded = PixArtSigmaPipeline.from_pretrained(directory, text_encoder=load_pruned(directory / "text_encoder"))
    assert type(loaded.text_encoder) is skrr.SkrrT5EncoderModel
    kwargs = dict(num_inference_steps=2, height=16, width=16, use_resolution_binning=False, output_type="np")
    with torch.no_grad():
        a = loaded(["a red cat"], generator=torch.Generator().manual_seed(0), **kwargs).images
        b = pipe(["a red cat"], generator=torch.Generator().manual_seed(0), **kwargs).images
    assert a.shape == (1, 16, 16, 3) and (a == b).all()


def test_skrr_prune_save_pipeline_writes_a_loadable_pipeline_folder(tmp_path):
    from diffusers import PixArtSigmaPipeline

    from skrr.experiments.cli.prune import write_plans
    from skrr.hub.atomic import current_umask

    plan = Plan(skip=[2, 3], info={"target": 0.1})
    write_plans([plan], tmp_path, save_encoder=False, model_name="tiny_pixart", device="cpu", save_pipeline=True)
    weights = tmp_path / "pipeline" / "text_encoder" / "model.safetensors"
    assert (weights.stat().st_mode & 0o777) == 0o666 & ~current_umask()  # readable like any file the user writes
    loaded = PixArtSigmaPipeline.from_pretrained(tmp_path / "pipeline", text_encoder=load_pruned(tmp_path / "pipeline" / "text_encoder"))
    assert sorted(int(k) for k in loaded.text_encoder.encoder.branches) == [0, 1, *range(4, 12)]
    assert Plan.load(tmp_path / "pipeline" / "text_encoder" / "plan.json").skip == [2, 3]


def test_a_decoder_only_folder_of_the_first_format_still_loads():
    """tests/data/pruned_format1_gemma2: Lumina 2's tiny Gemma-2 (read at hidden state -2), pruned
    and saved in the pruned.json format decoder-only encoders had before they got Skrr classes."""
    folder = Path(__file__).parent / "data" / "pruned_format1_gemma2"
    expected = torch.load(folder / "expected_output.pt")
    model = load_pruned(folder)
    assert type(model).__name__ == "SkrrGemma2Model"
    assert model.layers.schedule == [0, None, None, 5, 4, 5]
    with torch.no_grad():
        out = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"], output_hidden_states=True)
    assert torch.allclose(out.hidden_states[-2], expected["hidden_state"], atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_llama_and_qwen2_encoders_save_as_their_skrr_class(family, tmp_path):
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    config_cls, model_cls = {"llama": (LlamaConfig, LlamaModel), "qwen2": (Qwen2Config, Qwen2Model)}[family]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = model_cls(config_cls(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                     num_attention_heads=4, num_key_value_heads=2)).eval()
    ids = torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    plan = Plan(skip=[1, 2, 5], reuse={2: 0})
    apply_plan(model, plan)
    directory = save_pruned(model, plan, tmp_path / family)
    auto = transformers.AutoModel.from_pretrained(directory)
    assert type(auto).__name__ == f"Skrr{model_cls.__name__}"
    assert json.loads((directory / "config.json").read_text())["model_type"] == f"skrr_{family}"
    with torch.no_grad():
        assert torch.equal(auto(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
