"""skrr-inspect: the real T5-XXL table offline, a plan's sparsity, and one-line errors."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import T5Config, T5EncoderModel

from skrr import Plan, apply_plan
from skrr.models import CONFIGS_DIR

T5_XXL_PARAMS = 4_762_310_656
SCRIPT = Path(sys.executable).parent / "skrr-inspect"


def _run_cli(*args, cwd):
    """The installed console script, in a fresh process with the hub switched off."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)




def _table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]


def _xxl_plan(tmp_path, skip, reuse=None) -> Path:
    config = T5Config(**__import__("json").loads((CONFIGS_DIR / "t5_v1_1_xxl.json").read_text()))
    with torch.device("meta"):
        model = T5EncoderModel(config)
    plan = Plan(skip=skip, reuse=reuse or {})
    apply_plan(model, plan, name="pixart_sigma")
    return plan.save(tmp_path / "xxl_plan.json")


def test_pixart_sigma_table_offline(tmp_path):
    result = _run_cli("model=pixart_sigma", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout)
    assert len(rows) == 48
    assert [r[0] for r in rows] == [str(i) for i in range(48)]
    assert [r[1] for r in rows] == [str(i // 2) for i in range(48)]
    assert [r[2] for r in rows] == ["attn", "ffn"] * 24
    assert f"encoder parameters: {T5_XXL_PARAMS:,}" in result.stdout
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # read-only: no outputs dir, no .hydra, no log


def test_pixart_sigma_with_a_plan_reports_sparsity_and_pipeline_size(tmp_path, inspect_cli):
    path = _xxl_plan(tmp_path, skip=[0, 3, 5], reuse={3: 1})
    code, out, err = inspect_cli("model=pixart_sigma", f"plan={path}")
    assert code == 0, err
    rows = _table_rows(out)
    attn, ffn = int(rows[0][3].replace(",", "")), int(rows[1][3].replace(",", ""))
    removed = attn + 2 * ffn
    assert f"sparsity: {100 * removed / T5_XXL_PARAMS:.2f}%" in out.splitlines()
    before, after = [int(v.replace(",", "")) for v in
                     next(line for line in out.splitlines() if line.startswith("pipeline parameters")).split()[2::2]]
    assert before - after == removed and before > T5_XXL_PARAMS
    assert rows[0][4] == "skip" and rows[3][4:] == ["re-use", "1"] and rows[1][4] == "kept"


def test_tiny_model_with_a_hand_written_plan(tmp_path, inspect_cli):
    (tmp_path / "plan.json").write_text('{"skip": [2, 7], "reuse": {"7": 9}}')
    code, out, err = inspect_cli("model=tiny_pixart", f"plan={tmp_path / 'plan.json'}")
    assert code == 0, err
    rows = _table_rows(out)
    assert len(rows) == 12
    removed = int(rows[2][3].replace(",", "")) + int(rows[7][3].replace(",", ""))
    total = int(next(line for line in out.splitlines() if line.startswith("encoder parameters:")).split()[-1].replace(",", ""))
    assert f"sparsity: {100 * removed / total:.2f}%" in out


@pytest.mark.parametrize("plan_text,message", [
    ('{"skip": [1, 1]}', "error: plan skips a sub-block twice"),
    ('{"skip": [12]}', "error: plan skips sub-block 12, but the encoder has sub-blocks 0..11"),
    ('{"skip": [3, 5], "reuse": {"3": 5}}', "error: position 3 re-uses sub-block 5, which is not a kept sub-block"),
    ('{"skip": [3], "reuse": {"3": 4}}', "error: position 3 (ffn) cannot re-use sub-block 4 (attn): types differ"),
    ('{"skip": [1,', "is not valid JSON"),
])
def test_bad_plans_give_one_line_errors(tmp_path, inspect_cli, plan_text, message):
    (tmp_path / "plan.json").write_text(plan_text)
    code, out, err = inspect_cli("model=tiny_pixart", f"plan={tmp_path / 'plan.json'}")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_plan_for_another_encoder(tmp_path, inspect_cli):
    path = _xxl_plan(tmp_path, skip=[4])
    code, out, err = inspect_cli("model=tiny_pixart", f"plan={path}")
    assert code == 2 and "error: plan was made for encoder 'pixart_sigma'" in err and out == ""


def test_missing_plan_file(tmp_path, inspect_cli):
    code, out, err = inspect_cli("model=pixart_sigma", f"plan={tmp_path / 'nope.json'}")
    assert code == 2 and err.strip() == f"error: plan file not found: {tmp_path / 'nope.json'}"


def test_unknown_model_in_a_fresh_process(tmp_path):
    result = _run_cli("model=no_such_model", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown model 'no_such_model'; choose from ")
    assert "pixart_sigma" in result.stderr  # the options that exist
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model, sub_blocks, params, note", [
    ("sana_1600m", 52, 2_614_341_888, None),
    ("lumina2", 50, 2_536_473_600, "the 1 layer(s) after the deepest (marked unread) and the final norm "
                                   "(77,868,288 parameters; 2,614,341,888 with"),
    ("qwen_image", 56, 7_070_619_136, "language tower only"),
    ("flux2_klein", 54, 3_114_088_192, "reads hidden states [9, 18, 27]: the 9 layer(s) after the deepest (marked "
                                       "unread) and the final norm (908,379,904 parameters; 4,022,468,096 with"),
    ("z_image", 70, 3_921_534_720, "the 1 layer(s) after the deepest (marked unread) and the final norm "
                                   "(100,933,376 parameters; 4,022,468,096 with"),
    ("chroma", 48, 4_762_310_656, None),
    ("hidream_i1", 64, 7_504_924_672, "language tower only: the LM head (525,336,576 parameters) serves no "
                                      "text-to-image call and every plan removes it too"),
    ("hidream_i1_t5", 48, 4_762_310_656, None),
])
def test_decoder_only_pipelines_offline(inspect_cli, model, sub_blocks, params, note):
    code, out, err = inspect_cli(f"model={model}")
    assert code == 0, err
    rows = _table_rows(out)
    assert len([r for r in rows if r[-1] != "unread"]) == sub_blocks and f"encoder parameters: {params:,}" in out
    assert note is None or note in out


def test_flux2_dev_marks_layers_31_to_40_unread_and_totals_a_meta_build(inspect_cli):
    """The table ends at layer 30 (the deepest hidden state FLUX.2 reads) and lists layers 31-40 as
    unread; the totals add up to Mistral3 built on meta from the shipped public config, counted here
    straight from the stock model (no sub-block view)."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    config = Mistral3Config(**__import__("json").loads((CONFIGS_DIR / "mistral3_small_24b.json").read_text()))
    with torch.device("meta"):
        stock = Mistral3ForConditionalGeneration(config)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    tower = stock.model.language_model
    tail = sum(count(layer) for layer in tower.layers[30:]) + count(tower.norm)
    unused_by_t2i = count(stock.model.vision_tower) + count(stock.model.multi_modal_projector) + count(stock.lm_head)
    assert round(count(stock) / 1e9, 1) == 24.0 and round(tail / 1e9, 2) == 5.56  # the published sizes
    code, out, err = inspect_cli("model=flux2_dev")
    assert code == 0, err
    rows = _table_rows(out)
    unread = [r for r in rows if r[-1] == "unread"]
    assert len(rows) == 80 and len(unread) == 20 and {int(r[1]) + 1 for r in unread} == set(range(31, 41))
    assert [r[-1] for r in rows if r[-1].startswith("hidden_states")] == ["hidden_states[10]", "hidden_states[20]",
                                                                           "hidden_states[30]"]
    assert f"encoder parameters: {count(tower) - tail:,}" in out
    assert f"final norm ({tail:,} parameters" in out and f"LM head ({unused_by_t2i:,} parameters)" in out
    assert f"the encoder as shipped: {count(stock):,} parameters" in out
