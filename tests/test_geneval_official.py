"""Official GenEval round trip, offline: the export's folder layout, hand-made official
results.jsonl files summarised by the official rules, per-task agreement, and the row update."""
import json

import numpy as np
import pytest
from PIL import Image

from skrr.eval.geneval import official as O
from skrr.experiments.report import geneval_official as G

META = [{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
        {"tag": "counting", "include": [{"class": "dog", "count": 2}], "exclude": [{"class": "dog", "count": 3}],
         "prompt": "a photo of two dogs"}]


def _images(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / "imgs" / f"{i:05}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(p)
        paths.append(p)
    return paths


def _official_row(prompt, sample, meta, correct, root="/elsewhere/geneval_out"):
    """A line as evaluation/evaluate_images.py writes it (pandas records: metadata is a JSON string)."""
    return {"filename": f"{root}/{prompt:05}/samples/{sample:05}.png", "tag": meta["tag"], "prompt": meta["prompt"],
            "correct": correct, "reason": "" if correct else "expected dog>=2, found 1",
            "metadata": json.dumps(meta), "details": json.dumps({"dog": [[0, 0, 4, 4, 0.95]]})}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_export_writes_the_official_layout(tmp_path):
    images = _images(tmp_path, 4)
    per_image = [META[0], META[0], META[1], META[1]]
    out = O.export_official(images, per_image, 2, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001"]
    for prompt, meta in enumerate(META):
        assert json.loads((out / f"{prompt:05}" / "metadata.jsonl").read_text()) == meta
        assert sorted(p.name for p in (out / f"{prompt:05}" / "samples").iterdir()) == ["00000.png", "00001.png"]
    assert (out / "00001" / "samples" / "00001.png").read_bytes() == images[3].read_bytes()


def test_export_refuses_mismatched_inputs_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="3 images but 4 metadata rows"):
        O.export_official(_images(tmp_path, 3), [META[0]] * 4, 2, tmp_path / "out")
    with pytest.raises(ValueError, match="do not split into prompts of 2"):
        O.export_official(_images(tmp_path, 3), [META[0]] * 3, 2, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_official_results_summarise_by_the_official_rules(tmp_path):
    # single_object: 2 of 2 correct; counting: 1 of 4 -> overall = mean of tasks = (1 + 0.25) / 2
    rows = [_official_row(0, 0, META[0], True), _official_row(0, 1, META[0], True)]
    rows += [_official_row(1, s, META[1], s == 2) for s in range(4)]
    summary = O.summarize_official(O.read_results(_write(tmp_path / "results.jsonl", rows)))
    assert summary == {"single_object": 1.0, "counting": 0.25, "overall": 0.625, "images": 6, "prompts": 2}


def test_agreement_per_task(tmp_path):
    official = [_official_row(0, 0, META[0], True), _official_row(0, 1, META[0], False),
                _official_row(1, 0, META[1], True), _official_row(1, 1, META[1], False)]
    ours = [_official_row(0, 0, META[0], True, "here"), _official_row(0, 1, META[0], True, "here"),
            _official_row(1, 0, META[1], True, "here"), _official_row(1, 1, META[1], False, "here")]
    a = O.agreement(O.read_results(_write(tmp_path / "o.jsonl", official)), O.read_results(_write(tmp_path / "s.jsonl", ours)))
    assert a["single_object"] == {"agreement": 0.5, "images": 2, "official_only": 0, "ours_only": 1}
    assert a["counting"] == {"agreement": 1.0, "images": 2, "official_only": 0, "ours_only": 0}
    assert a["overall"] == {"agreement": 0.75, "images": 4}


@pytest.mark.parametrize("row, message", [({"tag": "counting", "correct": True}, "missing \\['filename'\\]"),
                                          ({"filename": "x.png", "tag": "counting", "correct": True}, "is not <prompt>")])
def test_malformed_results_are_clear_errors(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        O.read_results(_write(tmp_path / "bad.jsonl", [row]))


def test_import_writes_geneval_official_into_the_row_only(tmp_path):
    results = _write(tmp_path / "exp.jsonl", [{"run_key": "a", "metrics": {"geneval": {"overall": 0.5}}},
                                              {"run_key": "b", "metrics": {}}])
    official = _write(tmp_path / "results.jsonl", [_official_row(0, 0, META[0], True), _official_row(1, 0, META[1], False)])
    ours = _write(tmp_path / O.OURS, [_official_row(0, 0, META[0], True), _official_row(1, 0, META[1], True)])
    assert G.main(["import", "--results", str(results), "--run-key", "a", "--official", str(official)]) == 0
    a, b = [json.loads(line) for line in results.read_text().splitlines()]
    assert a["metrics"]["geneval_official"]["overall"] == 0.5 and a["metrics"]["geneval"] == {"overall": 0.5}
    assert a["geneval_agreement"]["counting"]["agreement"] == 0.0 and a["geneval_agreement"]["overall"]["agreement"] == 0.5
    assert b == {"run_key": "b", "metrics": {}}
    assert ours.is_file()


def test_import_of_an_unknown_run_fails_in_one_line_and_changes_nothing(tmp_path, capsys):
    results = _write(tmp_path / "exp.jsonl", [{"run_key": "a", "metrics": {}}])
    before = results.read_text()
    official = _write(tmp_path / "results.jsonl", [_official_row(0, 0, META[0], True)])
    assert G.main(["import", "--results", str(results), "--run-key", "zzz", "--official", str(official)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "zzz" in err and err.count("\n") == 1
    assert results.read_text() == before


def test_export_of_a_run_scores_its_images_with_this_projects_detector(tmp_path):
    """A toy-world run row whose GenEval images are renders of the true scenes: the exact detector
    calls each correct, and an official file that disagrees on one image shows in the agreement."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from skrr.experiments.cli.app import CONF_DIR
    from skrr.experiments.toyworld.captions import prompt_scenes
    from skrr.experiments.toyworld.scenes import render

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="run", overrides=["eval=toyworld", "eval.prompts.text.n=6"])
    scenes = prompt_scenes("geneval", 6, 0)
    (tmp_path / "run" / "geneval").mkdir(parents=True)
    for i, (scene, _) in enumerate(scenes):
        Image.fromarray(render(scene)).save(tmp_path / "run" / "geneval" / f"{i:05}.png")
    row = {"run_key": "k", "metrics": {}, "config": OmegaConf.to_container(cfg, resolve=True),
           "artifacts": {"images": str(tmp_path / "run")}}
    results = _write(tmp_path / "exp.jsonl", [row])
    out = tmp_path / "official"
    assert G.main(["export", "--results", str(results), "--run-key", "k", "--out", str(out)]) == 0
    ours = O.read_results(out / O.OURS)
    assert len(ours) == 6 and all(r["correct"] for r in ours.values())
    metas = [json.loads((out / f"{i:05}" / "metadata.jsonl").read_text()) for i in range(6)]
    assert [m["prompt"] for m in metas] == [m["prompt"] for _, m in scenes]
    official = [_official_row(i, 0, m, i != 3) for i, m in enumerate(metas)]
    _write(out / "results.jsonl", official)
    assert G.main(["import", "--results", str(results), "--run-key", "k", "--official", str(out / "results.jsonl")]) == 0
    agree = json.loads(results.read_text())["geneval_agreement"]
    assert agree["overall"] == {"agreement": 5 / 6, "images": 6}
    assert agree[metas[3]["tag"]]["ours_only"] == 1
