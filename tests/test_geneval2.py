"""GenEval 2 (Soft-TIFA): the prompt file's checks, each answer's variants and first tokens, the
AM/GM and breakdown arithmetic on hand-made numbers, a tiny random Qwen3-VL judge (built here from a
config, no download) with known logits, batched = one-by-one, and the metric end to end."""
import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from skrr.errors import InputError, MissingFile
from skrr.eval.geneval2.data import answer_variants, load_geneval2
from skrr.eval.geneval2.scoring import first_token_ids, soft_score, soft_tifa, soft_tifa_intervals, soft_tifa_values
from skrr.eval.prompts import prompt_sets

NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
SHAPES = ["cat", "dog", "cup", "car", "tree", "bird", "book", "lamp"]


def made_up_rows() -> list[dict]:
    """Ten prompts of this test's own making: atom counts 3..10 (and 3 twice more), every skill."""
    rows = []
    for atoms in range(3, 11):
        vqa, skills = [], []
        for k in range(atoms // 2):
            vqa += [[f"Are there any {SHAPES[k]}s in the image?", "Yes"],
                    [f"How many {SHAPES[k]}s are in the image?", NUMBERS[k % 8]]]
            skills += ["object", "count"]
        vqa.append([f"Is the {SHAPES[0]} red?", "Yes"])
        skills.append("attribute")
        if atoms % 2:
            vqa.append([f"Is the {SHAPES[0]} left of the {SHAPES[1]}?", "Yes"])
            skills.append("position")
        rows.append({"prompt": f"made-up prompt with {atoms} atoms", "atom_count": atoms, "vqa_list": vqa,
                     "skills": skills})
    rows.append({"prompt": "a dog chasing a cat", "atom_count": 3, "skills": ["object", "object", "verb"],
                 "vqa_list": [["Are there any dogs in the image?", "Yes"], ["Are there any cats in the image?", "Yes"],
                              ["Is the dog chasing the cat?", "Yes"]]})
    rows.append({"prompt": "three ten-legged bugs", "atom_count": 3, "skills": ["count", "object", "attribute"],
                 "vqa_list": [["How many bugs are in the image?", "ten"], ["Are there any bugs in the image?", "Yes"],
                              ["Do the bugs have ten legs?", "Yes"]]})
    return rows


def write_rows(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


# --- the prompt file ---------------------------------------------------------------------------
def test_prompt_file_loads_one_image_per_prompt_and_bad_files_fail_naming_the_line(tmp_path):
    rows = made_up_rows()
    path = write_rows(tmp_path / "g2.jsonl", rows)
    assert load_geneval2(path) == rows
    sets = prompt_sets(OmegaConf.create({"geneval2_metadata": str(path)}))
    assert sets["geneval2"] == rows  # one image per prompt by default
    assert len(prompt_sets(OmegaConf.create({"geneval2_metadata": str(path), "geneval2_images_per_prompt": 2}))
               ["geneval2"]) == 2 * len(rows)
    with pytest.raises(MissingFile, match="geneval2_metadata"):
        load_geneval2(tmp_path / "absent.jsonl")
    bad = {"is not JSON": "{oops", "lacks": json.dumps({k: v for k, v in rows[0].items() if k != "skills"}),
           "one skill per question": json.dumps({**rows[0], "skills": rows[0]["skills"][:-1]}),
           "unknown skills": json.dumps({**rows[0], "skills": ["colour"] * len(rows[0]["skills"])}),
           "not one of": json.dumps({**rows[0], "vqa_list": [["How many cats are in the image?", "eleven"]],
                                     "skills": ["count"]})}
    for words, line in bad.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(rows[1]) + "\n" + line + "\n")
        with pytest.raises(InputError, match=f"bad.jsonl:2.*{words}"):
            load_geneval2(path)


# --- pure arithmetic -------------------------------------------------------------------------------
def test_answer_variants_follow_geneval2():
    assert answer_variants("Is the cat red?", "Yes") == ["Yes", "yes", " yes", " Yes"]
    assert answer_variants("How many cats are in the image?", "three") == \
        ["three", "Three", " three", " Three", "3", " 3"]
    assert answer_variants("How many cats are in the image?", "ten")[4:] == ["10", " 10"]


class _Tokenizer:
    """Maps each string to made-up ids; its first id decides."""
    table = {"Yes": [5], "yes": [7, 8], " yes": [9], " Yes": [3, 5], "3": [11], " 3": [3, 11]}

    def encode(self, text, add_special_tokens=True):
        assert add_special_tokens is False
        return self.table[text]


def test_first_tokens_and_their_sum_keep_duplicates():
    assert first_token_ids(_Tokenizer(), ["Yes", "yes", " yes", " Yes"]) == [5, 7, 9, 3]
    ids = first_token_ids(_Tokenizer(), ["3", " 3", " Yes"])  # " 3" and " Yes" both start with id 3
    probs = torch.zeros(12)
    probs[3], probs[11], probs[5] = 0.25, 0.5, 0.125
    assert ids == [11, 3, 3] and soft_score(probs, ids) == 0.5 + 0.25 + 0.25


def test_soft_tifa_means_and_breakdowns_on_hand_made_scores():
    gm, am = soft_tifa([0.25, 1.0])
    assert gm == pytest.approx(0.5) and am == pytest.approx(0.625)
    assert soft_tifa([0.0, 1.0]) == (0.0, 0.5)
    with pytest.raises(InputError):
        soft_tifa([float("nan"), 1.0])
    # image 0: object 0.5, count 0.5 (atoms 3); image 1: object 1.0, attribute 0.25, object 0.5 (atoms 4)
    q_scores, q_skills, q_item = [0.5, 0.5, 1.0, 0.25, 0.5], [0, 2, 0, 1, 0], [0, 0, 1, 1, 1]
    gm, am = [0.5, 0.5], [0.5, 1.75 / 3]
    values = soft_tifa_values(gm, am, [3, 4], q_scores, q_skills, q_item)
    assert values == pytest.approx({"overall": 0.5, "am": (0.5 + 1.75 / 3) / 2, "object": 2.0 / 3,
                                    "attribute": 0.25, "count": 0.5, "atoms_3": 0.5, "atoms_4": 0.5})
    intervals = soft_tifa_intervals(gm, am, [3, 4], q_scores, q_skills, q_item, ["p", "q"], resamples=200)
    assert {k: v.value for k, v in intervals.items()} == pytest.approx(values)
    # the object mean pools questions: a resample of image 0 twice gives 0.5, of image 1 twice 0.75
    assert 0.5 - 1e-12 <= intervals["object"].lo < intervals["object"].hi <= 0.75 + 1e-12
    assert intervals["attribute"].lo == intervals["attribute"].hi == 0.25


# --- the tiny Qwen3-VL judge ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judge():
    from skrr.eval.geneval2.judge import QwenJudge

    return QwenJudge(tiny=True)


def image(seed: int = 0, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, hidden):
        return self.logits.to(hidden.dtype).expand(*hidden.shape[:-1], -1)


def test_a_judge_with_known_logits_gives_the_known_score(judge):
    tok = judge.processor.tokenizer
    first = {v: tok.encode(v, add_special_tokens=False)[0] for v in ["Yes", "yes", " yes", " Yes", "two", "Two",
                                                                       " two", " Two", "2", " 2"]}
    logits = torch.zeros(len(tok))
    logits[first["Yes"]], logits[first[" Yes"]], logits[first["2"]] = 3.0, 2.0, 1.0
    e = {i: math.exp(float(logits[i])) for i in range(len(tok))}
    z = sum(e.values())
    row = {"vqa_list": [["Is the cat red?", "Yes"], ["How many cats are in the image?", "two"]]}
    expected = [sum(e[first[v]] for v in ["Yes", "yes", " yes", " Yes"]) / z,
                sum(e[first[v]] for v in ["two", "Two", " two", " Two", "2", " 2"]) / z]
    head, judge.model.lm_head = judge.model.lm_head, FixedLogits(logits)
    try:
        assert judge(image(), row) == pytest.approx(expected, rel=1e-5)
    finally:
        judge.model.lm_head = head


def test_batched_questions_score_as_one_question_per_call(judge, monkeypatch):
    """GenEval 2 asks one question per call; the left-padded batch of an image's questions must give
    the same scores (tolerance 1e-5 relative, float32)."""
    row = made_up_rows()[5]  # 9 questions of different lengths: padding in the batch
    batched = judge(image(1), row)
    monkeypatch.setattr(judge, "batch_questions", False)
    assert batched == pytest.approx(judge(image(1), row), rel=1e-5, abs=1e-9)
    assert len(set(batched)) > 1  # the questions differ, so their scores do


def test_metric_end_to_end_on_generated_images(tmp_path):
    from skrr.eval.geneval2.evaluate import GenEval2
    from skrr.eval.per_item import from_metric, summary

    rows = made_up_rows()
    metric = GenEval2(tiny=True, batch_size=4)
    for start in range(0, len(rows), 4):
        metric.update([image(i) for i in range(start, min(start + 4, len(rows)))], rows[start:start + 4])
    values = metric.compute()
    assert set(values) == {"overall", "am", "object", "attribute", "count", "position", "verb",
                           *(f"atoms_{k}" for k in range(3, 11))}
    assert all(0 < v < 1 for v in values.values())
    assert values["overall"] <= values["am"]  # GM <= AM per prompt
    items = from_metric(metric, rows)
    assert items.values.shape == (len(rows),) and items.value() == pytest.approx(values["overall"])
    stored = summary(values["overall"], items, resamples=100, metric=metric)
    for k, v in values.items():
        assert stored[k]["value"] == pytest.approx(v) and stored[k]["ci"][0] <= v + 1e-12 <= stored[k]["ci"][1] + 2e-12
    with pytest.raises(InputError, match="2 images but 1 rows"):
        metric.update([image(0), image(1)], rows[:1])


# --- skrr-run ---------------------------------------------------------------------------------------
def test_skrr_run_writes_a_geneval2_row_and_bad_prompt_files_fail_in_one_line(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from skrr.eval.per_item import Items
    from skrr.experiments.cli.app import CONF_DIR, fail_fast
    from skrr.experiments.cli.run import run_job

    def run(path):
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            cfg = compose(config_name="run", overrides=[
                f"paths.root={tmp_path / 'runs'}", "model=tiny_pixart", "eval=smoke", "method=dense",
                "eval.metrics=[geneval2]", f"eval.prompts.geneval2_metadata={path}", "progress=false"])
        return run_job(cfg, "t")

    rows = made_up_rows()
    for bad, words in ((tmp_path / "absent.jsonl", "not found"),
                       (tmp_path / "bad.jsonl", "bad.jsonl:1 lacks")):
        if bad.name == "bad.jsonl":
            bad.write_text(json.dumps({"prompt": "x"}) + "\n")
        with pytest.raises(SystemExit) as e, fail_fast():
            run(bad)
        err = capsys.readouterr().err
        assert e.value.code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "runs" / "images").exists()  # refused before anything was generated
    (row,) = run(write_rows(tmp_path / "g2.jsonl", rows))
    values = row["metrics"]["geneval2"]
    assert set(values) >= {"overall", "am", "object", "attribute", "count", "position", "verb", "atoms_3", "atoms_10"}
    for v in values.values():
        assert v["ci"][0] - 1e-12 <= v["value"] <= v["ci"][1] + 1e-12 and 0 <= v["value"] <= 1
    items = Items.load(row["artifacts"]["items"]["geneval2"])
    assert len(items.values) == len(rows) and items.value() == pytest.approx(values["overall"]["value"])


def test_report_writes_geneval2_tables_with_intervals(tmp_path):
    from skrr.experiments.report.tables import report
    from skrr.experiments.runner.results import append_result

    def row(method, sparsity, gm):
        g2 = {"overall": {"value": gm, "ci": [gm - 0.02, gm + 0.02]}, "am": {"value": gm + 0.1, "ci": [gm, gm + 0.2]},
              "object": {"value": 0.9, "ci": [0.85, 0.95]}, "atoms_3": {"value": gm + 0.05, "ci": [gm, gm + 0.1]},
              "atoms_9": {"value": gm - 0.05, "ci": [gm - 0.1, gm]}}
        return {"run_key": f"{method}-{sparsity}", "experiment": "t", "finished_at": "2026-01-01T00:00:00",
                "method": method, "model": "tiny_pixart", "target": sparsity, "sparsity": sparsity,
                "metrics": {"geneval2": g2}, "plan": {}, "config": {"method": {"name": method, "sparsity": sparsity}}}

    store = tmp_path / "results" / "t.jsonl"
    for r in (row("dense", 0.0, 0.5), row("skrr", 0.24, 0.4), row("skrr", 0.32, 0.3)):
        append_result(store, r)
    report(store, tmp_path / "rep")
    md = (tmp_path / "rep" / "geneval2.md").read_text()
    assert "| Method | Sparsity | Soft-TIFA GM | Soft-TIFA AM | Object |" in md
    assert "| Dense | 0.0% | 0.500 ± 0.020 | 0.600 ± 0.100 | 0.900 ± 0.050 |" in md
    atoms = (tmp_path / "rep" / "geneval2_atoms.md").read_text()
    assert "| Method | Sparsity | 3 atoms | 9 atoms |" in atoms and "| Skrr | 32.0% | 0.350 ± 0.050 | 0.250 ± 0.050 |" in atoms
    assert (tmp_path / "rep" / "geneval2_vs_sparsity.png").is_file()
    from skrr.experiments.runner.logging_wandb import scalars

    logged = scalars(row("dense", 0.0, 0.5)["metrics"])  # what W&B gets: every number and its interval
    assert logged["geneval2/overall"] == 0.5 and logged["geneval2/atoms_9/ci_lo"] == pytest.approx(0.4)
    assert logged["geneval2/object/ci_hi"] == 0.95
