"""A pruned folder loads where skrr is not installed: `AutoModel.from_pretrained(dir,
trust_remote_code=True)` and `DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)` run
the `modeling_skrr.py` that save_pruned cut from skrr's own source, in a Python that cannot import
skrr, and give bit for bit what skrr gives (T5, CLIP with projection, Gemma-2, Qwen2.5-VL, Mistral3)."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skrr import Plan, apply_plan, load_pruned, save_pruned
from skrr.hub.pruned_io import save_pruned_pipeline
from skrr.hub.remote_code import MODULE_FILE, modeling_source
from skrr.models import load_pipeline

REPO = Path(__file__).resolve().parents[1]
IDS = torch.tensor([[5, 17, 42, 9, 1, 0, 0], [7, 3, 11, 25, 33, 8, 1]])
MASK = (torch.arange(7) < torch.tensor([[5], [7]])).long()
GENERATE = dict(num_inference_steps=2, output_type="np")

# Runs in `python -I` (no PYTHONPATH, no cwd on the path) with an import hook ahead of the editable
# install's finder, so `import skrr` fails; proves it, then loads every job and saves the outputs.
NO_SKRR = r'''
import importlib.abc, json, sys
REPO = sys.argv[2]


class BlockSkrr(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("skrr", "experiments", "baselines"):
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, BlockSkrr())
sys.path[:] = [p for p in sys.path if p not in ("", ".", REPO)]  # (the venv may live inside the repo)
try:
    import skrr  # noqa: F401
except ModuleNotFoundError:
    print("skrr is not importable")
else:
    raise SystemExit("skrr imported: the test proves nothing")
import numpy as np
import torch
import transformers
from diffusers import DiffusionPipeline

torch.set_num_threads(1)
jobs = json.loads(open(sys.argv[1]).read())
for job in jobs:
    with torch.no_grad():
        if job["kind"] == "encoder":
            enc = transformers.AutoModel.from_pretrained(job["dir"], trust_remote_code=True)
            assert "skrr" not in sys.modules and type(enc).__module__.startswith("transformers_modules"), type(enc).__module__
            ids = torch.tensor(job["ids"])
            mask = None if job["mask"] is None else torch.tensor(job["mask"])
            out = enc(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            last = out.logits if hasattr(out, "logits") else out.last_hidden_state  # Qwen2.5-VL: a causal LM
            torch.save({"last": last, "hidden": [h for h in out.hidden_states if h is not None]
                        if out.hidden_states is not None else None}, job["out"])
            print(job["dir"], type(enc).__name__)
        else:
            pipe = DiffusionPipeline.from_pretrained(job["dir"], trust_remote_code=True)
            enc = getattr(pipe, job["component"])
            assert type(enc).__module__.startswith("diffusers_modules"), type(enc).__module__
            image = pipe(prompt=job["prompts"], generator=torch.Generator().manual_seed(0), **job["kwargs"]).images
            np.save(job["out"], image)
            print(job["dir"], type(pipe).__name__, type(enc).__name__)
assert "skrr" not in sys.modules
'''


def _run_without_skrr(jobs: list[dict], tmp_path: Path) -> str:
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-I", "-c", NO_SKRR, str(spec), str(REPO)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skrr is not importable" in done.stdout
    return done.stdout


def _outputs(enc, ids, mask):
    with torch.no_grad():
        out = enc(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden = [h for h in out.hidden_states if h is not None] if out.hidden_states is not None else None
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state), hidden


def _images(pipe, prompts, kwargs):
    with torch.no_grad():
        return pipe(prompt=prompts, generator=torch.Generator().manual_seed(0), **kwargs).images


def test_the_modelling_file_is_cut_from_skrr_and_imports_only_torch_and_transformers():
    source = modeling_source()
    tree = ast.parse(source)
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert roots <= {"__future__", "dataclasses", "torch", "transformers"}, roots
    import inspect

    import skrr.encoders.decoder_only
    import skrr.hub.pretrained
    # the very source of skrr's classes, not a copy kept by hand: a change there is a change here
    for obj in (skrr.hub.pretrained.SkrrT5EncoderModel, skrr.hub.pretrained._build_pruned, skrr.encoders.decoder_only.DecoderSubBlockEncoder):
        assert inspect.getsource(obj) in source


def test_pruned_folders_load_without_skrr_and_equal_load_pruned(tmp_path, tiny_clip):
    from skrr.models import load_text_side

    jobs, expected = [], {}
    # T5 (tiny PixArt), its pipeline folder too
    pipe = load_pipeline("tiny_pixart")
    plan = Plan(skip=[1, 2, 5, 8], reuse={5: 3})
    apply_plan(pipe.text_encoder, plan, name="tiny_pixart")
    save_pruned(pipe.text_encoder, plan, tmp_path / "t5", source={"model": "tiny_pixart"})
    save_pruned_pipeline(pipe, "text_encoder", plan, tmp_path / "pixart")
    pixart_kwargs = {**GENERATE, "height": 16, "width": 16, "use_resolution_binning": False}
    expected["pixart"] = _images(pipe, ["a red cat"], pixart_kwargs)
    # CLIP with projection (tiny SD3's first encoder; no skrr model prunes it inside a pipeline:
    # SD3 reads CLIP's per-layer hidden states, which a pruned CLIP does not have)
    sd3 = load_pipeline("tiny_sd3")
    clip_plan = Plan(skip=[0, 3], reuse={3: 1})
    apply_plan(sd3.text_encoder, clip_plan, name="tiny_sd3_clip")
    save_pruned(sd3.text_encoder, clip_plan, tmp_path / "clip_proj")
    # plain CLIP text model
    apply_plan(tiny_clip, Plan(skip=[3, 0], reuse={0: 2}))
    save_pruned(tiny_clip, Plan(skip=[3, 0], reuse={0: 2}), tmp_path / "clip")
    # decoder-only: Gemma-2 (tiny Sana, also as a pipeline) and Qwen2.5-VL (tiny Qwen-Image)
    sana = load_pipeline("tiny_sana")
    dec_plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    apply_plan(sana.text_encoder, dec_plan, name="tiny_sana")
    save_pruned(sana.text_encoder, dec_plan, tmp_path / "gemma2")
    save_pruned_pipeline(sana, "text_encoder", dec_plan, tmp_path / "sana")
    sana_kwargs = {**GENERATE, "height": 32, "width": 32, "use_resolution_binning": False}
    expected["sana"] = _images(sana, ["a red cat"], sana_kwargs)
    qwen = load_text_side("tiny_qwen_image")
    qwen_plan = Plan(skip=[1, 2, 3], reuse={3: 5})
    apply_plan(qwen.encoder, qwen_plan, name="tiny_qwen_image")
    save_pruned(qwen.encoder, qwen_plan, tmp_path / "qwen")

    for name in ("t5", "clip_proj", "clip", "gemma2", "qwen"):
        mask = None if name.startswith("clip") else MASK.tolist()
        jobs.append({"kind": "encoder", "dir": str(tmp_path / name), "ids": IDS.tolist(), "mask": mask,
                     "out": str(tmp_path / f"{name}.pt")})
    for name, component, kwargs in (("pixart", "text_encoder", pixart_kwargs), ("sana", "text_encoder", sana_kwargs)):
        jobs.append({"kind": "pipeline", "dir": str(tmp_path / name), "component": component, "prompts": ["a red cat"],
                     "kwargs": kwargs, "out": str(tmp_path / f"{name}.npy")})
    out = _run_without_skrr(jobs, tmp_path)
    assert "SkrrT5EncoderModel" in out and "SkrrCLIPTextModelWithProjection" in out and "SkrrGemma2Model" in out

    for job in jobs:
        if job["kind"] == "encoder":
            mask = None if job["mask"] is None else MASK
            last, hidden = _outputs(load_pruned(job["dir"]), IDS, mask)
            got = torch.load(job["out"])
            assert torch.equal(got["last"], last), job["dir"]
            assert (hidden is None) == (got["hidden"] is None)
            if hidden is not None:
                assert len(hidden) == len(got["hidden"]) and all(torch.equal(a, b) for a, b in zip(hidden, got["hidden"]))
        else:
            name = Path(job["dir"]).name
            image = np.load(job["out"])
            assert image.shape == expected[name].shape and np.isfinite(image).all()
            assert (image == expected[name]).all(), name


def test_a_changed_skrr_class_changes_the_folder_it_writes(tiny_t5, tmp_path, monkeypatch):
    """The file follows skrr's source: no hand-kept copy can drift from it."""
    import skrr.hub.remote_code

    plan = Plan(skip=[1])
    apply_plan(tiny_t5, plan)
    before = save_pruned(tiny_t5, plan, tmp_path / "a") / MODULE_FILE
    monkeypatch.setattr(skrr.hub.remote_code, "PARTS", [*skrr.hub.remote_code.PARTS[:-1], ("skrr.hub.pretrained", ["FORMAT"])])
    after = save_pruned(tiny_t5, plan, tmp_path / "b") / MODULE_FILE
    assert "class SkrrT5EncoderModel" in before.read_text() and "class SkrrT5EncoderModel" not in after.read_text()
    monkeypatch.setattr(skrr.hub.remote_code, "PARTS", [("skrr.hub.pretrained", ["NoSuchClass"])])
    with pytest.raises(RuntimeError, match="NoSuchClass"):
        modeling_source()


def test_with_skrr_the_registered_classes_load_without_remote_code(tiny_t5, t5_inputs, tmp_path):
    import transformers

    import skrr

    plan = Plan(skip=[0, 4], reuse={4: 2})
    apply_plan(tiny_t5, plan)
    directory = save_pruned(tiny_t5, plan, tmp_path / "enc")
    config = json.loads((directory / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "modeling_skrr.SkrrT5Config", "AutoModel": "modeling_skrr.SkrrT5EncoderModel"}
    auto = transformers.AutoModel.from_pretrained(directory)  # no trust_remote_code: skrr's own class
    assert type(auto) is skrr.SkrrT5EncoderModel
    ids, mask = t5_inputs
    with torch.no_grad():
        assert torch.equal(auto(input_ids=ids, attention_mask=mask)[0], tiny_t5(input_ids=ids, attention_mask=mask)[0])


def test_pruned_flux2_pipeline_loads_without_skrr_and_generates_the_same_image(tmp_path):
    """FLUX.2's Mistral3 encoder, pruned: saved without its unread tail, vision tower and LM head,
    in a pipeline folder that loads with trust_remote_code=True where skrr is not installed."""
    pipe = load_pipeline("tiny_flux2")
    plan = Plan(skip=[1, 2, 3, 22, 41], reuse={3: 5, 41: 39})
    apply_plan(pipe.text_encoder, plan, name="tiny_flux2")
    save_pruned_pipeline(pipe, "text_encoder", plan, tmp_path / "flux2")
    save_pruned(pipe.text_encoder, plan, tmp_path / "mistral3")
    kwargs = {**GENERATE, "height": 32, "width": 32, "max_sequence_length": 64}
    expected = _images(pipe, ["a red cat"], kwargs)
    weights = json.loads((tmp_path / "flux2" / "text_encoder" / "config.json").read_text())
    assert weights["architectures"] == ["SkrrMistral3ForConditionalGeneration"]
    jobs = [{"kind": "encoder", "dir": str(tmp_path / "mistral3"), "ids": IDS.tolist(), "mask": MASK.tolist(),
             "out": str(tmp_path / "mistral3.pt")},
            {"kind": "pipeline", "dir": str(tmp_path / "flux2"), "component": "text_encoder", "prompts": ["a red cat"],
             "kwargs": kwargs, "out": str(tmp_path / "flux2.npy")}]
    out = _run_without_skrr(jobs, tmp_path)
    assert "Flux2Pipeline SkrrMistral3ForConditionalGeneration" in out
    image = np.load(tmp_path / "flux2.npy")
    assert image.shape == expected.shape == (1, 32, 32, 3) and np.isfinite(image).all() and (image == expected).all()
    got = torch.load(tmp_path / "mistral3.pt")
    loaded = load_pruned(tmp_path / "mistral3")
    assert not hasattr(loaded.model, "vision_tower") and sum(p.numel() for p in loaded.lm_head.parameters()) == 0
    _, hidden = _outputs(loaded, IDS, MASK)
    assert len(hidden) == len(got["hidden"]) == 31 and all(torch.equal(a, b) for a, b in zip(hidden, got["hidden"]))
