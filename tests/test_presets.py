"""The paper's plans as presets (`paper:pixart_sigma/skrr@0.40`), plan comparison in
skrr-inspect, and `method=preset` cutting a saved order per target."""

from pathlib import Path

import pytest

from skrr import Plan, PlanError
from skrr.presets import load_plan
from skrr.prune import prune

SKRR_ORDER = [46, 5, 6, 47, 44, 2, 11, 24, 23, 17, 18, 45, 10, 30, 29, 40, 39, 38, 37, 42, 25, 22, 43, 36]
SHORTGPT_BLOCKS = [10, 11, 8, 9, 12, 13, 5, 14, 6, 4]
CALIB = {"source": "builtin", "pool": 50, "size": 4, "seed": 0, "min_tokens": None, "max_tokens": None}




def test_paper_presets_reach_the_published_sparsities():
    skrr = load_plan("paper:pixart_sigma/skrr@0.40")
    assert skrr.skip == SKRR_ORDER[:len(skrr.skip)] and round(100 * skrr.sparsity, 2) == 41.92
    shortgpt = load_plan("paper:pixart_sigma/shortgpt@0.40")
    assert shortgpt.skip == [i for b in SHORTGPT_BLOCKS for i in (2 * b, 2 * b + 1)]
    assert round(100 * shortgpt.sparsity, 2) == 40.52


def test_a_preset_is_the_shortest_prefix_reaching_the_target():
    # T5-XXL sub-block sizes (attention: q, k, v, o + norm; gated FFN: wi_0, wi_1, wo + norm) and total
    size = {0: 4 * 4096 * 4096 + 4096, 1: 3 * 4096 * 10240 + 4096}
    total = 4_762_310_656

    def sparsity(skip):
        return sum(size[i % 2] for i in skip) / total

    for target in (0.1, 0.24, 0.32, 0.4):
        plan = load_plan(f"paper:pixart_sigma/skrr@{target}")
        assert plan.skip == SKRR_ORDER[:len(plan.skip)]
        assert sparsity(plan.skip) >= target > sparsity(plan.skip[:-1])
        assert plan.sparsity == pytest.approx(sparsity(plan.skip))
    assert load_plan("paper:pixart_sigma/skrr").skip == SKRR_ORDER  # no target: the whole order


@pytest.mark.parametrize("spec, message", [("paper:sdxl/skrr@0.4", "unknown preset model"),
                                           ("paper:pixart_sigma/laco@0.4", "unknown preset method"),
                                           ("paper:pixart_sigma/skrr@forty", "must be a number"),
                                           ("paper:pixart_sigma/skrr@0.6", "reaches only")])
def test_bad_presets_are_clear_errors(spec, message):
    with pytest.raises(PlanError, match=message):
        load_plan(spec)


def test_inspect_prints_the_presets_sparsity(inspect_cli):
    code, out, _ = inspect_cli("model=pixart_sigma", "plan=paper:pixart_sigma/skrr@0.40")
    assert code == 0 and "sparsity: 41.92%" in out
    code, out, _ = inspect_cli("model=pixart_sigma", "plan=paper:pixart_sigma/shortgpt@0.40",
                            "compare=paper:pixart_sigma/skrr@0.40")
    assert code == 0 and "sparsity: 40.52%" in out
    shared = sorted(set(load_plan("paper:pixart_sigma/shortgpt@0.40").skip) & set(SKRR_ORDER[:21]))
    assert f"shared skipped sub-blocks: {len(shared)} {shared}" in out
    assert f"jaccard: {len(shared) / (20 + 21 - len(shared)):.3f}" in out


def test_inspect_compare_with_calibration_prints_d_of_both(inspect_cli, tmp_path):
    Plan(skip=[1, 2]).save(tmp_path / "a.json")
    Plan(skip=[2, 3, 5]).save(tmp_path / "b.json")
    code, out, err = inspect_cli("model=tiny_pixart", f"plan={tmp_path / 'a.json'}",
                              f"compare={tmp_path / 'b.json'}", "calibration=builtin", "calibration.size=4",
                              "calibration.pool=50")
    assert code == 0, err
    assert "shared skipped sub-blocks: 1 [2]" in out and "jaccard: 0.250" in out
    line = next(x for x in out.splitlines() if x.startswith("D on 4 calibration prompts"))
    d_a, d_b = float(line.split("plan ")[1].split()[0]), float(line.split("compare ")[1])
    assert d_a > 0 and d_b > 0 and d_a != d_b


def test_method_preset_cuts_a_saved_order_per_target(tmp_path):
    order = [3, 7, 1, 10, 5, 8]
    Plan(skip=order, info={"order": order}).save(tmp_path / "searched.json")
    plans = prune("tiny_pixart", {"name": "preset", "plan": str(tmp_path / "searched.json"), "sparsity": [0.1, 0.3]},
                  CALIB, progress=False)
    assert [p.info["target"] for p in plans] == [0.1, 0.3]
    for plan in plans:
        assert plan.sparsity >= plan.info["target"] and plan.skip == order[:len(plan.skip)]
        assert plan.info["d_final"] > 0
    assert len(plans[0].skip) < len(plans[1].skip)


def test_method_preset_refuses_a_preset_for_another_encoder():
    with pytest.raises(PlanError, match="is for encoder 'pixart_sigma'"):
        prune("tiny_pixart", {"name": "preset", "plan": "paper:pixart_sigma/skrr", "sparsity": 0.2}, CALIB,
              progress=False)


# the toy world keeps depth auto: its documented tables were measured with it (conf/experiment/demo.yaml)
TOY_WORLD = {"demo", "toyworld_full"}


def test_every_paper_table_and_ablation_runs_skrr_with_the_papers_search_depth():
    """Each experiment's Skrr, swept (Table 1 methods) or fixed (ablations), is the paper's: depth 24,
    one S* cut per target; the toy world's is depth auto. Twins inherit their parents' choice."""
    from hydra import compose, initialize_config_dir

    from skrr.experiments.cli.app import CONF_DIR

    found = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for path in sorted((Path(CONF_DIR) / "experiment").glob("*.yaml")):
            cfg = compose(config_name="run", overrides=[f"experiment={path.stem}"], return_hydra_config=True)
            swept = cfg.hydra.sweeper.params.get("method")
            choices = swept.split(",") if swept else [cfg.hydra.runtime.choices.method]
            skrr = [m for m in choices if m.startswith("skrr")]
            method = compose(config_name="run", overrides=[f"experiment={path.stem}", f"method={skrr[0]}"]).method
            found[path.stem] = (method.name, method.depth, method.select)
    expected = {name: ("skrr", "auto" if name in TOY_WORLD else 24, "prefix") for name in found}
    assert len(found) > len(TOY_WORLD) and found == expected
