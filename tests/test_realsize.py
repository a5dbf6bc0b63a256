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
