"""GenEval decision rules on hand-built detections: every task, pass and fail."""
import pytest

from skrr.eval.geneval.prompts import CLASSNAMES, generate_suite
from skrr.eval.geneval.rules import Detection, RuleConfig, relative_position, score_image, summarize


def det(label, score=0.95, box=(10, 10, 30, 30), color=None):
    return Detection(label=label, score=score, box=box, color=color)


SINGLE = {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"}
TWO = {"tag": "two_object", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}], "prompt": "p"}
COUNT3 = {"tag": "counting", "include": [{"class": "cup", "count": 3}], "exclude": [{"class": "cup", "count": 4}],
          "prompt": "a photo of three cups"}
COLOR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
POSITION = {"tag": "position", "include": [{"class": "cat", "count": 1},
                                           {"class": "dog", "count": 1, "position": ["left of", 0]}],
            "prompt": "a photo of a dog left of a cat"}
ATTR = {"tag": "color_attr", "include": [{"class": "car", "count": 1, "color": "red"},
                                         {"class": "bench", "count": 1, "color": "blue"}], "prompt": "p"}


def test_single_object_threshold_is_strict():
    assert score_image(SINGLE, [det("dog", 0.31)])[0]
    ok, reason = score_image(SINGLE, [det("dog", 0.3), det("cat")])
    assert not ok and "expected dog>=1, found 0" in reason


def test_two_object_needs_both():
    assert score_image(TWO, [det("dog"), det("cat", 0.5)]) == (True, "")
    assert not score_image(TWO, [det("dog"), det("dog")])[0]


def test_counting_uses_high_threshold_and_exclude():
    three = [det("cup", 0.95, (i * 40, 0, i * 40 + 20, 20)) for i in range(3)]
    assert score_image(COUNT3, three)[0]
    ok, reason = score_image(COUNT3, three + [det("cup", 0.92, (200, 0, 220, 20))])
    assert not ok and "expected cup<4, found 4" in reason
    # a fourth cup below the counting threshold (0.9) is not counted, but 0.85 > 0.3 would be elsewhere
    assert score_image(COUNT3, three + [det("cup", 0.85)])[0]
    assert not score_image(COUNT3, three[:2] + [det("cup", 0.85)])[0]


def test_max_objects_caps_the_count():
    many = [det("cup", 0.95) for _ in range(20)]
    meta = {"tag": "counting", "include": [{"class": "cup", "count": 2}], "exclude": [{"class": "cup", "count": 17}],
            "prompt": "p"}
    assert score_image(meta, many)[0]  # only 16 kept, so the exclude at 17 never fires
    assert not score_image(meta, many, cfg=RuleConfig(max_objects=17))[0]


def test_overlap_exclusion_when_enabled():
    boxes = [det("cup", 0.95, (0, 0, 20, 20)), det("cup", 0.94, (1, 1, 21, 21)), det("cup", 0.93, (50, 50, 70, 70))]
    meta = {"tag": "counting", "include": [{"class": "cup", "count": 3}], "prompt": "p"}
    assert score_image(meta, boxes)[0]  # official default max_overlap=1.0 keeps overlapping boxes
    assert not score_image(meta, boxes, cfg=RuleConfig(max_overlap=0.5))[0]


def test_color_uses_preset_color_without_classifier():
    assert score_image(COLOR, [det("car", color="red")])[0]
    ok, reason = score_image(COLOR, [det("car", color="blue")])
    assert not ok and "found 0 red" in reason and "1 blue" in reason


def test_color_classifier_called_only_for_unset_colors():
    calls = []

    def color_fn(dets, classname):
        calls.append((len(dets), classname))
        return ["red"] * len(dets)

    assert score_image(COLOR, [det("car")], color_fn)[0]
    assert calls == [(1, "car")]
    score_image(COLOR, [det("car", color="red")], color_fn)
    assert calls == [(1, "car")]
    with pytest.raises(ValueError, match="color_fn"):
        score_image(COLOR, [det("car")])


def test_color_judged_on_top_object_only():
    dets = [det("car", 0.9, color="blue"), det("car", 0.8, color="red")]
    assert not score_image(COLOR, dets)[0]


def test_position_pass_fail_and_margin():
    cat = det("cat", box=(100, 40, 140, 80))
    assert score_image(POSITION, [cat, det("dog", box=(10, 40, 50, 80))])[0]
    ok, reason = score_image(POSITION, [cat, det("dog", box=(200, 40, 240, 80))])
    assert not ok and "right of" in reason
    # centres 30 px apart but boxes 40 wide: margin 0.1 * 80 = 8 < 30 -> still left; overlapping fully -> no relation
    assert score_image(POSITION, [cat, det("dog", box=(70, 40, 110, 80))])[0]
    assert not score_image(POSITION, [cat, det("dog", box=(100, 40, 140, 80))])[0]


def test_position_needs_target():
    ok, reason = score_image(POSITION, [det("dog")])
    assert not ok and "no target for dog" in reason


def test_relative_position_diagonal():
    # mostly below, a bit right: dy dominates so only 'below'
    assert relative_position((0, 100, 10, 110), (0, 0, 10, 10)) == {"below"}
    assert relative_position((100, 100, 110, 110), (0, 0, 10, 10)) == {"below", "right of"}


def test_color_attr_both_colors():
    assert score_image(ATTR, [det("car", color="red"), det("bench", color="blue")])[0]
    assert not score_image(ATTR, [det("car", color="blue"), det("bench", color="red")])[0]


def test_summarize_overall_is_mean_of_tasks():
    results = [{"tag": "single_object", "correct": True}, {"tag": "single_object", "correct": False},
               {"tag": "counting", "correct": True}]
    s = summarize(results)
    assert s["single_object"] == 0.5 and s["counting"] == 1.0 and s["overall"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        summarize([])


def test_generated_suite_covers_six_tasks():
    suite = generate_suite(n=5)
    tags = {m["tag"] for m in suite}
    assert tags == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert len(CLASSNAMES) == 80 and sum(m["tag"] == "single_object" for m in suite) == 80
    for m in suite:
        if m["tag"] in ("colors", "color_attr"):
            assert all(r["class"] != "person" for r in m["include"])
        if m["tag"] == "counting":
            assert m["exclude"][0]["count"] == m["include"][0]["count"] + 1
    assert generate_suite(n=5) == suite  # fixed seed
