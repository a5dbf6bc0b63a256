"""skrr.eval.intervals against closed forms and published values, and the properties a bootstrap
over prompts must have (clusters resample together, pairing cancels shared prompt effects)."""
import math

import numpy as np
import pytest

from skrr.eval.geneval.rules import summarize
from skrr.eval.intervals import (
    bootstrap_mean,
    bootstrap_statistic,
    geneval_intervals,
    normal_half_width,
    paired_difference,
    paired_statistic,
    wilson,
)


def test_bootstrap_of_bernoulli_matches_normal_closed_form():
    # N = 1,600 at p ~ 0.6: the closed form 1.96 sqrt(p(1-p)/N) is ~0.024. With B = 4,000 resamples
    # the Monte-Carlo error of a 2.5% / 97.5% quantile is sqrt(q(1-q)/B) / phi(1.96) ~ 0.04 sd, i.e.
    # ~2% of the half-width (1.96 sd; over 60 resampling seeds the ratio's sd measured 1.6%); the
    # binomial's skew and 1/N grid add well under 1%. 6% is ~4 of those sds, while a wrong resampling
    # (too few or too many draws per resample, ignoring weights) is off by far more.
    rng = np.random.default_rng(7)
    x = (rng.random(1600) < 0.6).astype(float)
    ci = bootstrap_mean(x, resamples=4000, seed=1)
    closed = normal_half_width(x.mean(), len(x))
    assert ci.value == pytest.approx(x.mean())
    assert ci.half_width == pytest.approx(closed, rel=0.06)
    assert ci.lo < x.mean() < ci.hi
    assert closed == pytest.approx(1.959964 * math.sqrt(x.mean() * (1 - x.mean()) / 1600))


def test_bootstrap_covers_the_true_rate_about_95_percent():
    # 400 simulated data sets of 200 Bernoulli(0.3) draws; the coverage estimate's sd is ~0.011
    rng = np.random.default_rng(3)
    hits = 0
    for trial in range(400):
        x = (rng.random(200) < 0.3).astype(float)
        ci = bootstrap_mean(x, resamples=1000, seed=trial)
        hits += ci.lo <= 0.3 <= ci.hi
    assert 0.915 <= hits / 400 <= 0.985


def test_wilson_matches_published_values():
    # Newcombe (1998), Stat. Med. 17:857, Table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775
    ci = wilson(81, 263)
    assert (round(ci.lo, 4), round(ci.hi, 4)) == (0.2553, 0.3662)
    ci = wilson(0, 10)
    assert ci.lo == 0 and round(ci.hi, 4) == 0.2775
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(11, 10)


def test_geneval_overall_is_the_mean_of_task_means_with_stratified_interval():
    rng = np.random.default_rng(0)
    rates = {"single_object": 0.95, "two_object": 0.7, "counting": 0.5, "colors": 0.8, "position": 0.3, "color_attr": 0.2}
    sizes = {"single_object": 300, "two_object": 260, "counting": 280, "colors": 300, "position": 260, "color_attr": 200}
    tags = np.concatenate([[t] * sizes[t] for t in rates])
    correct = np.concatenate([(rng.random(sizes[t]) < rates[t]).astype(float) for t in rates])
    ci = geneval_intervals(correct, tags, resamples=4000, seed=2)
    official = summarize([{"tag": t, "correct": c} for t, c in zip(tags, correct)])
    for task, value in official.items():
        assert ci[task].value == pytest.approx(value)
    # closed form of the mean of independent task rates: z sqrt(sum p(1-p)/n) / T
    p = {t: correct[tags == t].mean() for t in rates}
    closed = 1.959964 * math.sqrt(sum(p[t] * (1 - p[t]) / sizes[t] for t in rates)) / len(rates)
    assert ci["overall"].half_width == pytest.approx(closed, rel=0.06)
    assert ci["position"].half_width == pytest.approx(normal_half_width(p["position"], sizes["position"]), rel=0.08)


def test_images_of_one_prompt_resample_together():
    rng = np.random.default_rng(1)
    per_prompt = (rng.random(400) < 0.5).astype(float)
    images = np.repeat(per_prompt, 4)        # 4 seeds that agree perfectly: no more information than 1
    prompt = np.repeat(np.arange(400), 4)
    clustered = bootstrap_mean(images, clusters=prompt, seed=5)
    assert (clustered.lo, clustered.hi) == pytest.approx((bootstrap_mean(per_prompt, seed=5).lo,
                                                          bootstrap_mean(per_prompt, seed=5).hi))
    naive = bootstrap_mean(images, seed=5)   # treating them as 1,600 independent images is ~2x too narrow
    assert naive.half_width < 0.6 * clustered.half_width


def test_paired_difference_cancels_shared_prompt_effects():
    rng = np.random.default_rng(4)
    difficulty = rng.normal(0, 1.0, 500)     # large prompt-to-prompt spread both methods share
    a = difficulty + 0.10 + rng.normal(0, 0.05, 500)
    b = difficulty + rng.normal(0, 0.05, 500)
    paired = paired_difference(a, b, seed=0)
    assert paired.value == pytest.approx(a.mean() - b.mean())
    assert paired.excludes(0) and paired.lo < 0.10 < paired.hi
    marginal = bootstrap_mean(a, seed=0).half_width + bootstrap_mean(b, seed=0).half_width
    assert paired.half_width < 0.1 * marginal  # unpaired intervals overlap: they could not tell a from b
    same = paired_difference(a, a)
    assert (same.value, same.lo, same.hi) == (0, 0, 0)
    with pytest.raises(ValueError, match="same items"):
        paired_difference(a, b[:-1])


def test_statistic_bootstrap_for_non_means():
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, 800)
    ci = bootstrap_statistic(x, np.mean, resamples=2000, seed=0)
    assert ci.half_width == pytest.approx(1.959964 * x.std(ddof=1) / math.sqrt(800), rel=0.08)
    y = x + 0.5 + rng.normal(0, 0.1, 800)
    d = paired_statistic(y, x, np.std, resamples=500)  # spread is nearly the same: interval holds 0-ish values
    assert d.lo < d.value < d.hi and abs(d.value) < 0.05


def test_bad_input_fails_fast():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean([0.1, float("nan")])
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean([0.1, 0.2], level=95)
    with pytest.raises(ValueError, match="one label per item"):
        bootstrap_mean([0.1, 0.2], clusters=[0])
    with pytest.raises(ValueError, match="no per-item"):
        bootstrap_mean([])
