"""benchmarks/realsize.py's checkpoint writer: meta-built modules written as sharded safetensors
with random weights load back with from_pretrained (tied weights tied, dtype kept)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

SPEC = importlib.util.spec_from_file_location("realsize", Path(__file__).resolve().parents[1] / "benchmarks" / "realsize.py")
realsize = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(realsize)


def test_sharded_random_t5_loads_back(tmp_path, monkeypatch):
    from transformers import T5EncoderModel

    from skrr.models.tiny import tiny_t5

    monkeypatch.setattr(realsize, "SHARD_BYTES", 20_000)
    with torch.device("meta"):
        meta = tiny_t5()
    realsize.build_component("transformers.T5EncoderModel", meta, tmp_path / "enc", torch.bfloat16, realsize.RandomFill(0))
    index = json.loads((tmp_path / "enc" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and "encoder.embed_tokens.weight" not in index["weight_map"]
    model = T5EncoderModel.from_pretrained(tmp_path / "enc", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and not p.is_meta for p in model.parameters())
    assert model.shared.weight is model.encoder.embed_tokens.weight
    weights = [p for n, p in model.named_parameters() if p.dim() == 2]
    assert len({float(p.float().std()) for p in weights}) == len(weights)  # distinct random tensors, not copies
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[5, 6, 7, 1]]))[0]
    assert torch.isfinite(out.float()).all()


def test_random_denoiser_projection_is_read_by_the_text_side(tmp_path, monkeypatch):
    from diffusers import PixArtTransformer2DModel

    from skrr.models import load_projection

    monkeypatch.setattr(realsize, "SHARD_BYTES", 50_000)
    config = dict(sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
                  in_channels=4, cross_attention_dim=24, out_channels=8, norm_type="ada_norm_single",
                  num_embeds_ada_norm=1000, norm_elementwise_affine=False)
    with torch.device("meta"):
        meta = PixArtTransformer2DModel(**config)
    realsize.build_component("diffusers.PixArtTransformer2DModel", meta, tmp_path / "transformer", torch.float32,
                             realsize.RandomFill(0))
    full = PixArtTransformer2DModel.from_pretrained(tmp_path / "transformer")
    proj = load_projection(str(tmp_path), "transformer", "diffusers.PixArtTransformer2DModel", "caption_projection",
                           torch.bfloat16)
    expected = full.caption_projection.state_dict()
    assert all(torch.equal(t, expected[k].to(torch.bfloat16)) for k, t in proj.state_dict().items())


def test_refuses_checkpoints_inside_the_repository(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text('{"skip": [1]}')
    repo = Path(realsize.__file__).resolve().parents[1]
    with pytest.raises(SystemExit, match="inside the repository"):
        realsize.main(["--plan", str(plan), "--workdir", str(tmp_path), "--cache", str(repo / "ckpt")])


def test_llm_benchmark_plan_removes_whole_read_layers_up_to_the_target():
    """benchmarks/realsize_llm.py's fixed plan for Z-Image's Qwen3-4B (reads hidden_states[-2]): whole
    layers of the read part, the fewest that reach 40% of it, counted here on the stock meta model."""
    from transformers import Qwen3Config, Qwen3Model

    from skrr.models import CONFIGS_DIR, model_config

    spec = importlib.util.spec_from_file_location("realsize_llm", Path(__file__).resolve().parents[1] / "benchmarks" / "realsize_llm.py")
    llm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(llm)
    plan = llm.fixed_plan(model_config("z_image"), 0.4)
    with torch.device("meta"):
        stock = Qwen3Model(Qwen3Config(**json.loads((CONFIGS_DIR / "qwen3_4b.json").read_text())))
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    read = size(stock) - size(stock.layers[-1]) - size(stock.norm)
    layers = sorted({i // 2 for i in plan.skip})
    assert sorted(plan.skip) == [i for b in layers for i in (2 * b, 2 * b + 1)] and max(layers) < 35
    removed = sum(size(stock.layers[b]) for b in layers)
    assert removed >= 0.4 * read > removed - size(stock.layers[0])
