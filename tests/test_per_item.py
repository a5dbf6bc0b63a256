"""skrr.eval.per_item: per-image scores saved beside a result, reloaded, bootstrapped and paired (FID too)."""
import numpy as np
import pytest

from skrr.eval.intervals import bootstrap_mean
from skrr.eval.per_item import Items, item_keys
from skrr.experiments.report.compare import Point, difference


def test_mean_items_round_trip_and_interval(tmp_path):
    keys = item_keys(["a red cube", "a red cube", "two balls"], [0, 1, 2])
    assert keys[0] == "0|a red cube"
    items = Items.mean([1.0, 0.0, 1.0], keys, clusters=["a red cube", "a red cube", "two balls"], strata=["c", "c", "n"])
    back = Items.load(items.save(tmp_path / "x" / "items.npz"))
    assert back.kind == "mean" and list(back.keys) == keys and back.strata.tolist() == ["c", "c", "n"]
    assert back.value() == pytest.approx((0.5 + 1.0) / 2)  # mean of the stratum means, as GenEval's overall
    assert not list(tmp_path.glob("x/*.tmp*"))
    v = np.random.default_rng(0).random(300)
    assert Items.mean(v, [str(i) for i in range(300)]).interval(seed=3) == bootstrap_mean(v, seed=3)


def test_fid_items_match_the_frechet_distance_and_pair(tmp_path):
    from scipy import linalg

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2000, 4))
    reference = {"mu": ref.mean(0), "sigma": np.cov(ref, rowvar=False)}
    feats = rng.normal(0.3, 1.0, size=(400, 4))
    keys = [str(i) for i in range(400)]
    items = Items.fid(feats, keys, keys, reference)
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    closed = ((mu - reference["mu"]) ** 2).sum() + np.trace(sigma + reference["sigma"]
                                                            - 2 * linalg.sqrtm(sigma @ reference["sigma"]).real)
    assert items.value() == pytest.approx(closed, rel=1e-6)
    ci = items.interval(resamples=200)
    assert ci.lo < ci.value < ci.hi
    # a second method on the same images, shifted further from the reference: paired FID difference
    worse = Items.fid(feats + 0.2, keys, keys, reference)
    rows = []
    for name, it in (("a", items), ("b", worse)):
        path = it.save(tmp_path / f"{name}.npz")
        rows.append({"label": name, "sparsity": 0.3, "metrics": {"fid": it.interval(resamples=100).as_dict()},
                     "artifacts": {"items": {"fid": str(path)}}})
    d = difference(*[Point(r["label"], 0.3, 0.3, "at", [(r, 1.0)]) for r in rows], "fid", resamples=100)
    assert d.paired and d.beyond_noise and d.winner() == "a" and d.value == pytest.approx(items.value() - worse.value())


def test_bad_items_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        Items.mean([1.0, 0.0], ["a"])
    with pytest.raises(ValueError, match="reference"):
        Items("fid", np.array(["a"]), np.zeros((1, 2)), np.array(["a"]))
    with pytest.raises(FileNotFoundError, match="no per-item scores"):
        Items.load(tmp_path / "missing.npz")


def test_geneval_resample_unit_prompt_or_image():
    """Few distinct prompts (as in the toy language): resampling whole prompts measures prompt-to-prompt
    spread; resampling images (the prompts as the population) gives the Bernoulli closed form."""
    import torch

    from skrr.eval.geneval.evaluate import GenEval
    from skrr.eval.intervals import normal_half_width
    from skrr.eval.per_item import from_metric

    rng = np.random.default_rng(0)
    prompts = [f"prompt {i % 4}" for i in range(1600)]
    accuracy = {f"prompt {i}": p for i, p in enumerate([0.2, 0.5, 0.8, 0.95])}
    correct = [bool(rng.random() < accuracy[p]) for p in prompts]
    widths = {}
    for unit in ("prompt", "image"):
        metric = GenEval(detector=lambda image: [], color_classifier=None, resample=unit)
        # the states update() fills: correctness and task (one task: "counting") per image
        metric.item_scores.append(torch.tensor(correct, dtype=torch.float64))
        metric.item_strata.append(torch.full((1600,), 2, dtype=torch.long))
        widths[unit] = from_metric(metric, prompts).interval(seed=0).half_width
    p = np.mean(correct)
    assert widths["image"] == pytest.approx(normal_half_width(p, 1600), rel=0.1)
    assert widths["prompt"] > 3 * widths["image"]  # four clusters: the spread between prompts dominates
    with pytest.raises(ValueError, match="resample"):
        GenEval(detector=lambda image: [], color_classifier=None, resample="seed")
