"""Table 2 rows of the LLM-encoder models, offline on the tiny twins: the efficiency report counts
each text encoder against itself as shipped, so an unread tail (Z-Image reads hidden_states[-2]) and
an unused LM head (HiDream's Llama) show as removed, and skrr-report's Table 2 prints the pruned
encoder's share. Expected counts come from the stock pipelines, never from skrr's view."""
import torch
from hydra import compose, initialize_config_dir

from skrr import Plan
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.cli.run import run_job
from skrr.experiments.report.tables import report
from skrr.experiments.runner.results import results_path
from skrr.models import build_model, resolve_pretrained

EXPERIMENT = "tiny_table2_efficiency"
size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731


def _rows(tmp_path, model, method, sparsity):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[f"experiment={EXPERIMENT}", f"model={model}", f"method={method}",
                                                    f"sparsity=[{sparsity}]", f"paths.root={tmp_path}", "calibration.size=4",
                                                    "progress=false"])
    assert list(cfg.eval.metrics) == ["efficiency"]
    return run_job(cfg, EXPERIMENT)


def test_table2_takes_each_new_model_with_its_real_calibration():
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        for name in ("flux2_dev", "flux2_klein", "z_image", "chroma", "hidream_i1", "hidream_i1_t5"):
            cfg = compose(config_name="run", overrides=["experiment=table2_efficiency", f"model={name}"])
            assert cfg.model.name == name and list(cfg.eval.metrics) == ["efficiency"]
            assert cfg.calibration.source == "coco" and list(cfg.sparsity) == [0.24, 0.32, 0.40]


def _stock(name, component):
    pipe = build_model(name).pipeline.load_class().from_pretrained(resolve_pretrained(name), dtype=torch.float32)
    return getattr(pipe, component)


def test_dense_z_image_row_counts_its_unread_tail_as_removed(tmp_path):
    (row,) = _rows(tmp_path, "tiny_z_image", "dense", 0.0)
    stock = _stock("tiny_z_image", "text_encoder")  # Qwen3Model: the pipeline reads hidden_states[-2]
    tail = size(stock.layers[-1]) + size(stock.norm)
    encoder = row["metrics"]["efficiency"]["text_encoders"]["text_encoder"]
    assert encoder["shipped_params"] == size(stock) and encoder["params"] == size(stock) - tail > 0


def test_hidream_rows_count_the_plan_and_the_lm_head_and_the_report_prints_the_share(tmp_path):
    rows = _rows(tmp_path, "tiny_hidream_i1", "shortgpt", 0.3)
    stock = _stock("tiny_hidream_i1", "text_encoder_4")
    layers = stock.model.layers
    plan = Plan.load(rows[0]["artifacts"]["plan"])
    assert plan.skip and not plan.reuse
    removed = sum(size(layers[i // 2].input_layernorm) + size(layers[i // 2].self_attn) if i % 2 == 0 else
                  size(layers[i // 2].post_attention_layernorm) + size(layers[i // 2].mlp) for i in plan.skip)
    encoder = rows[0]["metrics"]["efficiency"]["text_encoders"]["text_encoder_4"]
    assert encoder["shipped_params"] == size(stock)
    assert encoder["params"] == size(stock) - size(stock.lm_head) - removed
    _rows(tmp_path, "tiny_hidream_i1", "dense", 0.0)
    report(results_path(tmp_path, EXPERIMENT), tmp_path / "report")
    table = (tmp_path / "report" / "table2.md").read_text()
    assert "| Encoder | Encoder / shipped |" in table
    dense_share = (size(stock) - size(stock.lm_head)) / size(stock)  # dense drops the head too, at load
    assert f"| {encoder['params'] / size(stock):.3f} |" in table and f"| {dense_share:.3f} |" in table
