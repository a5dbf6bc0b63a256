"""`method.compute_dtype=certified` makes float32's decisions: every candidate scored in bf16, the close
calls again in float32. Checked against the float32 search itself: the same skip order, beams and
re-use map, D within float32's tolerance (the exact evaluator sees other batch shapes), on a tiny T5,
the tiny PixArt twin through skrr.prune, and the trained toy world."""
import pytest
import torch
from omegaconf import OmegaConf
from test_skrr import seeded_model, setup, text_side, tokenizer  # noqa: F401 (tokenizer: a fixture)

from skrr.config.files import group_option
from skrr.encoders.view import total_params
from skrr.prune import prune
from skrr.search.certified import Certified, certify
from skrr.search.compute import TOLERANCE
from skrr.search.discrepancy import Discrepancy
from skrr.search.prefix_cache import PrefixCachedDiscrepancy
from skrr.search.skip_reuse import beam_search, reuse_phase

TOL = TOLERANCE[torch.float32]


def same_search(a, b):
    """Identical decisions; D values equal within float32's tolerance."""
    (ra, reuse_a, trace_a), (rb, reuse_b, trace_b) = a, b
    assert ra.order == rb.order and reuse_a == reuse_b
    assert [[sorted(s) for s, _ in depth] for depth in ra.beams] == [[sorted(s) for s, _ in depth] for depth in rb.beams]
    for x, y in zip([d for depth in ra.beams for _, d in depth] + trace_a,
                    [d for depth in rb.beams for _, d in depth] + trace_b):
        assert x == pytest.approx(y, rel=TOL, abs=1e-12)


def run(disc, enc, model, beam=3, depth=6):
    result = beam_search(disc, enc.sub_blocks, total_params(model), beam, depth=depth, progress=False)
    reuse, trace = reuse_phase(disc, enc.sub_blocks, result.order, progress=False)
    return result, reuse, trace


@pytest.mark.parametrize("fast", [True, False])
def test_certified_search_decides_as_float32_on_a_tiny_t5(tokenizer, tmp_path, fast):  # noqa: F811
    model, projection = seeded_model(num_layers=6)
    enc, disc, calib = setup(model, projection, tokenizer, tmp_path, fast=fast)
    side = text_side(model, projection, tokenizer)
    evaluator = PrefixCachedDiscrepancy if fast else Discrepancy
    certified = Certified(lambda c: evaluator(side, c), calib)
    same_search(run(disc, enc, model), run(certified, enc, model))
    assert certified.cheap.forward.dtype == torch.bfloat16 and certified.exact.forward.dtype == torch.float32
    assert 0 < certified.rescored < certified.scored  # some calls were close, most were not


def plans_of(model, compute_dtype, calibration, method="skrr", **settings):
    return prune(model, {"name": method, "sparsity": [0.2, 0.4], "compute_dtype": compute_dtype, **settings},
                 calibration)


@pytest.mark.parametrize("model,calibration,settings", [
    ("tiny_pixart", {"source": "builtin", "size": 16}, {}),
    ("toyworld_v2", {**OmegaConf.to_container(group_option("calibration", "toyworld")), "size": 8}, {"depth": 4}),
])
def test_certified_plans_are_the_float32_plans(model, calibration, settings):
    exact = plans_of(model, "float32", calibration, **settings)
    certified = plans_of(model, "certified", calibration, **settings)
    for a, b in zip(exact, certified):
        assert (a.skip, a.reuse) == (b.skip, b.reuse)
        for key in ("d_skip", "d_final"):
            assert b.info[key] == pytest.approx(a.info[key], rel=TOL)
        assert b.info["depth_d"] == pytest.approx(a.info["depth_d"], rel=TOL)
        record = b.info["certified"]
        assert b.info["compute_dtype"] == "certified" and 0 < record["rescored"] < record["scored"]
        assert record["fraction"] == round(record["rescored"] / record["scored"], 4)


def test_a_baseline_with_reuse_certifies_its_reuse_phase():
    calibration = {"source": "builtin", "size": 16}
    exact = plans_of("tiny_pixart", "float32", calibration, method="finercut", reuse=True)
    certified = plans_of("tiny_pixart", "certified", calibration, method="finercut", reuse=True)
    assert [(p.skip, p.reuse) for p in exact] == [(p.skip, p.reuse) for p in certified]
    assert certified[0].info["certified"]["scored"] > 0


def test_the_band_widens_until_it_holds_the_deviations_it_sees():
    """A candidate bf16 scores 20% low would win in bf16; the band grows until the float32 winner is in it."""
    exact = [1.2, 1.0, 2.0, 3.0]
    rough = [1.0, 1.05, 2.0, 3.0]
    asked = []

    def rescore(indices):
        asked.extend(indices)
        return [exact[i] for i in indices]

    out, rescored, widened = certify(rough, 1, rescore)
    assert min(range(4), key=out.__getitem__) == 1 and sorted(asked) == [0, 1]  # float32's choice, each scored once
    assert widened > 0 and rescored == 2
    # agreeing dtypes: only the pivot's band
    assert certify([1.0, 1.5, 2.0], 1, lambda idx: [1.0 for _ in idx]) == ([1.0, 1.5, 2.0], 1, 0)
