"""skrr-report: Table 1/2 in Markdown and LaTeX, metric-vs-sparsity and D-vs-depth PNGs, from a
hand-written results store shaped like skrr-run's rows."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from skrr.experiments.cli.report import main
from skrr.experiments.report.tables import latest, report
from skrr.experiments.runner.results import append_result

GENEVAL_KEYS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


def row(method, target, sparsity, quality, key=None, **method_cfg):
    geneval = {k: quality * (i + 1) / 7 for i, k in enumerate(GENEVAL_KEYS)}
    geneval["overall"] = sum(geneval.values()) / 6
    depth_d = [10 ** (d - 6) / (method_cfg.get("beam_width", 3)) for d in range(6)] if method == "skrr" else None
    return {"run_key": key or f"{method}-{target}-{json.dumps(method_cfg, sort_keys=True)}", "experiment": "t",
            "finished_at": "2026-01-01T00:00:00", "method": method, "model": "tiny_pixart", "target": target,
            "sparsity": sparsity,
            "metrics": {"fid": 20 + 30 * (1 - quality), "clip": 0.3 * quality, "dreamsim": quality, "geneval": geneval,
                        "efficiency": {"pipeline_params": int(5.42e9 * (1 - 0.9 * sparsity)),
                                       "pipeline_bytes": int(10.18e9 * (1 - 0.9 * sparsity)), "tflops": 12.5}},
            "plan": {"depth_d": depth_d}, "config": {"method": {"name": method, "sparsity": target, **method_cfg}}}


def table1_rows():
    rows = [row("dense", 0.0, 0.0, 1.0)]
    for method, q in (("shortgpt", 0.3), ("laco", 0.5), ("finercut", 0.7), ("skrr", 0.8)):
        rows += [row(method, t, t + 0.01, q - t, beam_width=3) if method == "skrr" else row(method, t, t + 0.01, q - t)
                 for t in (0.24, 0.32, 0.40)]
    return rows


def test_table1_markdown_latex_and_plots(tmp_path, capsys):
    store = tmp_path / "results" / "t.jsonl"
    for r in table1_rows():
        assert append_result(store, r)
    assert not append_result(store, table1_rows()[0])  # same run_key: not stored twice
    written = report(store, tmp_path / "rep")["tiny_pixart"]
    md = (tmp_path / "rep" / "table1.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    assert len(body) == 13
    assert "| Method | Sparsity | FID | CLIP | DreamSim | Single | Two | Count. | Colors | Pos. | Color attr. | Overall |" in md
    assert body[0].startswith("| Dense | 0.0% |") and body[-1].startswith("| Skrr | 41.0% |")
    assert md.count("ShortGPT") == 3 and md.count("Skrr") == 3
    tex = (tmp_path / "rep" / "table1.tex").read_text()
    assert "\\toprule" in tex and "41.0\\%" in tex and tex.count("\\\\") == 14  # header + 13 rows
    t2 = (tmp_path / "rep" / "table2.md").read_text()
    assert "| Dense | 0.0% | 5.42B | 10.18GB | 12.5 |" in t2
    assert "| Dense | 0.0% |" in capsys.readouterr().out  # the tables are printed too
    for name in ("fid_vs_sparsity", "clip_vs_sparsity", "dreamsim_vs_sparsity", "geneval_vs_sparsity", "d_vs_depth"):
        with Image.open(written[name]) as im:
            assert im.size[0] > 400 and len(set(im.convert("L").getdata())) > 8  # a drawn plot, not a blank canvas


def test_ablation_labels_and_latest_row_wins(tmp_path):
    rows = [row("skrr", 0.3, 0.31, 0.5, beam_width=k) for k in (1, 2, 3, 4)]
    newer = {**row("skrr", 0.3, 0.31, 0.9, key="rerun", beam_width=1), "finished_at": "2027-01-01T00:00:00"}
    pts = latest(rows + [newer])
    assert [p["label"] for p in pts] == [f"Skrr (beam_width={k})" for k in (1, 2, 3, 4)]
    assert pts[0]["run_key"] == "rerun"
    store = tmp_path / "a.jsonl"
    for r in rows:
        append_result(store, r)
    out = report(store, tmp_path / "rep")["tiny_pixart"]
    assert out["d_vs_depth"].is_file()


def test_cli_missing_file_is_one_line_error(tmp_path):
    p = subprocess.run([sys.executable, "-m", "skrr.experiments.cli.report", str(tmp_path / "none.jsonl")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: no results file") and "Traceback" not in p.stderr
    with pytest.raises(SystemExit):
        main([str(tmp_path / "none.jsonl")])


def test_near_ties_are_named_per_row_and_depth(tmp_path, capsys):
    rows = table1_rows()
    tied = next(r for r in rows if r["method"] == "skrr" and r["target"] == 0.32)
    tied["plan"]["near_ties"] = ["depth 7 (keep margin 3.10e-06)"]
    store = tmp_path / "results" / "t.jsonl"
    for r in rows:
        append_result(store, r)
    written = report(store, tmp_path / "rep")["tiny_pixart"]
    text = written["near_ties"].read_text()
    assert "depth 7 (keep margin 3.10e-06)" in text and "33.00%" in text
    assert text.count("\n- ") == 1 and "Near-ties" in capsys.readouterr().out
    for r in rows:
        r["plan"].pop("near_ties", None)
    clean = tmp_path / "results" / "clean.jsonl"
    for r in rows:
        append_result(clean, r)
    assert "near_ties" not in report(clean, tmp_path / "rep2")["tiny_pixart"]
