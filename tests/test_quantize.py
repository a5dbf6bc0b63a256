"""Quantization on top of pruning: torchao int8/int4 on CPU, real stored bytes (quantized data and
scales counted as stored), and `model.quantize` in skrr-run."""
import copy

import pytest
import torch
from torch import nn

from skrr import Plan, apply_plan
from skrr.encoders.quantize import quantize_encoder, stored_bytes, validate


@pytest.fixture(scope="module")
def toy_side():
    from skrr.models import load_text_side

    return load_text_side("toyworld")


def _encode(encoder, tokens):
    with torch.no_grad():
        return encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])[0]


def test_int8_linear_stores_int8_data_and_its_scales():
    lin = nn.Sequential(nn.Linear(64, 32))
    quantize_encoder(lin, "int8")
    # int8 weights, one fp32 scale and one int8 zero point per output row, fp32 bias
    assert stored_bytes(lin) == 32 * 64 * 1 + 32 * 4 + 32 * 1 + 32 * 4


def test_int8_toy_encoder_is_under_three_tenths_of_fp32_and_close_in_output(toy_side):
    tokens = toy_side.tokenize(["a red circle left of a blue square", "two green triangles"])
    dense = toy_side.encoder
    fp32 = sum(p.numel() * 4 for p in dense.parameters())
    assert stored_bytes(dense) == fp32
    q = quantize_encoder(copy.deepcopy(dense), "int8")
    assert stored_bytes(q) <= 0.3 * fp32
    ref, out = _encode(dense, tokens), _encode(q, tokens)
    assert (out - ref).norm() / ref.norm() < 0.1  # int8 per-row weights: a small relative error


def test_pruning_and_int8_multiply(toy_side):
    dense = toy_side.encoder
    fp32 = stored_bytes(dense)
    int8 = stored_bytes(quantize_encoder(copy.deepcopy(dense), "int8"))
    pruned = copy.deepcopy(dense)
    apply_plan(pruned, Plan(skip=[1, 3, 5, 7, 9, 10]))
    pruned_bytes = stored_bytes(pruned)
    both = stored_bytes(quantize_encoder(pruned, "int8"))
    assert both < pruned_bytes < fp32 and both < int8
    # the kept share is about the same before and after quantization
    assert both / int8 == pytest.approx(pruned_bytes / fp32, rel=0.05)


def test_int4_runs_on_cpu_and_reports_what_it_stores(toy_side):
    tokens = toy_side.tokenize(["a red circle"])
    q = quantize_encoder(copy.deepcopy(toy_side.encoder), "int4")
    assert torch.isfinite(_encode(q, tokens)).all()
    assert stored_bytes(q) < 0.35 * stored_bytes(toy_side.encoder)


@pytest.mark.parametrize("args, message", [(("int3",), "unknown quantize 'int3'"),
                                           (("int8", "gptq"), "unknown quantize backend"),
                                           (("int8", "bitsandbytes", "cpu"), "needs a CUDA device")])
def test_bad_quantize_options_fail_fast(args, message):
    with pytest.raises(ValueError, match=message):
        validate(*args)


def test_skrr_run_reports_quantized_encoder_bytes(tmp_path):
    from hydra import compose, initialize_config_dir

    from skrr.experiments.cli.app import CONF_DIR
    from skrr.experiments.cli.run import run_job

    def run(quantize):
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            cfg = compose(config_name="run", overrides=[f"paths.root={tmp_path}", "method=dense", "eval.metrics=[efficiency]",
                                                        "eval.prompts.text=[a cat]", "progress=false",
                                                        f"model.quantize={quantize}"])
        return run_job(cfg, "q")[0]["metrics"]["efficiency"]

    plain, int8 = run("none"), run("int8")
    assert int8["encoder_bytes"] < 0.5 * plain["encoder_bytes"]  # tiny T5: the fp32 embedding is a large share
    assert int8["encoder_params"] == plain["encoder_params"]
