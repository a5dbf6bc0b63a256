"""Pruned encoder I/O: kept weights only, exact round trip, (1 - sparsity) x dense bytes, loaded
without the dense weights, and usable inside a diffusers pipeline."""
import copy
import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import skrr.hub.pretrained
from skrr import Plan, apply_plan, load_pruned, save_pruned
from skrr.hub.pruned_io import WEIGHTS

PLAN = {"skip": [0, 3, 4, 5, 6, 7, 9, 10], "reuse": {4: 2, 9: 11}}  # 8 of 12 sub-blocks, incl. the bias holder


def _param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights counted once


class _AllocationSpy(TorchDispatchMode):
    """Adds up the bytes of every distinct real (non-meta) storage that torch ops return."""

    def __init__(self):
        super().__init__()
        self.storages: dict[int, int] = {}

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                self.storages[storage.data_ptr()] = storage.nbytes()
        return out


def _pruned(model, tmp_path, plan=PLAN):
    plan = Plan(skip=list(plan["skip"]), reuse=dict(plan["reuse"]))
    apply_plan(model, plan, name="tiny")
    return plan, save_pruned(model, plan, tmp_path / "pruned")


def test_t5_round_trip_gives_identical_outputs(tiny_t5, t5_inputs, tmp_path):
    ids, mask = t5_inputs
    plan, directory = _pruned(tiny_t5, tmp_path)
    loaded = load_pruned(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors", "modeling_skrr.py", "plan.json"]
    assert not any(p.is_meta for p in [*loaded.parameters(), *loaded.buffers()])
    assert loaded.encoder.schedule == tiny_t5.encoder.schedule
    assert loaded.encoder.branches[str(loaded.encoder.schedule[4])] is loaded.encoder.branches["2"]  # still shared
    assert loaded.shared.weight is loaded.encoder.embed_tokens.weight  # T5's tied embedding stays tied
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask)[0], tiny_t5(input_ids=ids, attention_mask=mask)[0])


def test_clip_round_trip_gives_identical_outputs(tiny_clip, tmp_path):
    ids = torch.randint(2, 400, (2, 10), generator=torch.Generator().manual_seed(0))
    plan, directory = _pruned(tiny_clip, tmp_path, {"skip": [3, 0], "reuse": {0: 2}})
    loaded = load_pruned(directory)
    with torch.no_grad():
        a, b = loaded(input_ids=ids), tiny_clip(input_ids=ids)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.pooler_output, b.pooler_output)


def test_pruned_parameter_bytes_are_one_minus_sparsity_of_dense(tiny_t5, tmp_path):
    dense_bytes = _param_bytes(tiny_t5)
    plan, directory = _pruned(tiny_t5, tmp_path)
    loaded = load_pruned(directory)
    assert plan.sparsity > 0.4  # a real cut, so a loader that kept the dense weights fails below
    assert _param_bytes(loaded) == round((1 - plan.sparsity) * dense_bytes)
    stored = json.loads((directory / "plan.json").read_text())["sparsity"]
    assert stored == plan.sparsity
    # and the file holds only the kept weights (plus the safetensors header)
    assert (directory / WEIGHTS).stat().st_size < _param_bytes(loaded) + 16_384


def test_loading_never_materialises_the_dense_weights(tiny_t5, tmp_path):
    from skrr.models.tiny import tiny_t5 as build_t5

    dense_bytes = _param_bytes(tiny_t5)
    plan, directory = _pruned(tiny_t5, tmp_path)
    pruned_bytes = round((1 - plan.sparsity) * dense_bytes)
    with _AllocationSpy() as spy:
        load_pruned(directory)
    assert spy.bytes < pruned_bytes + (dense_bytes - pruned_bytes) / 2
    # the spy does see dense weights when they are built: the check above can fail
    with _AllocationSpy() as control:
        build_t5()
    assert control.bytes >= dense_bytes


def test_load_pruned_builds_on_meta(tiny_t5, tmp_path, monkeypatch):
    """Every parameter the loader creates before assigning the saved tensors is on meta."""
    plan, directory = _pruned(tiny_t5, tmp_path)
    seen = []
    real_cut = skrr.hub.pretrained.cut

    def spy(enc, *args, **kwargs):
        seen.extend(p.device.type for p in enc.parameters())
        return real_cut(enc, *args, **kwargs)

    monkeypatch.setattr(skrr.hub.pretrained, "cut", spy)
    load_pruned(directory)
    assert seen and set(seen) == {"meta"}


def test_failed_save_leaves_no_half_written_directory(tiny_t5, tmp_path, monkeypatch):
    plan, directory = _pruned(tiny_t5, tmp_path)
    before = sorted(p.name for p in directory.iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Plan, "save", boom)  # fails after the weights are written
    with pytest.raises(OSError, match="disk full"):
        save_pruned(tiny_t5, plan, directory)
    assert sorted(p.name for p in directory.iterdir()) == before  # the previous save is intact
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]  # no temp dir left behind


def test_missing_pruned_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_pruned(tmp_path)


def test_pruned_encoder_drops_into_the_pipeline(tmp_path):
    from skrr.models import load_pipeline, load_text_side

    side = load_text_side("tiny_pixart")
    dense = copy.deepcopy(side.encoder)
    plan, directory = _pruned(side.encoder, tmp_path)
    pruned = load_pruned(directory)
    pipe = load_pipeline("tiny_pixart", text_encoder=pruned)
    assert pipe.text_encoder is pruned
    prompts = ["a red cat on a wooden table"]
    with torch.no_grad():
        embeds, mask, _, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=48)
        t = side.tokenize(prompts)
        assert torch.equal(embeds, pruned(input_ids=t["input_ids"], attention_mask=t["attention_mask"])[0])
        assert not torch.allclose(embeds, dense(input_ids=t["input_ids"], attention_mask=t["attention_mask"])[0])
        image = pipe(prompts, num_inference_steps=2, height=16, width=16, use_resolution_binning=False,
                     output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 16, 16, 3) and bool(torch.isfinite(torch.from_numpy(image)).all())
