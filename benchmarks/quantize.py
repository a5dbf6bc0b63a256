"""Pruning x quantization: encoder bytes and GenEval of dense, dense+int8, Skrr 40%, Skrr 40%+int8.

Measured in the toy world (`model=toyworld calibration=toyworld eval=toyworld`, through the same
run_job as skrr-run, so the artifacts are cached under --root), GenEval with the 95% interval
the metric stores (bootstrap over prompts, resampled within each task; overall = mean of tasks). Then the same
composition for T5-XXL, *computed* from its meta-device build (no weights): bytes of bf16
weights, and of int8 Linear weights with torchao's per-row scale and zero point.

    python benchmarks/quantize.py --root runs/quantize          # about 10 min on one CPU core
"""
from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

CONFIGS = [("dense", "dense", "none"), ("dense + int8", "dense", "int8"),
           ("Skrr 40%", "skrr", "none"), ("Skrr 40% + int8", "skrr", "int8")]


def run_row(root: str, method: str, quantize: str, calib_size: int) -> dict:
    from hydra import compose, initialize_config_dir

    from skrr.experiments.cli.app import CONF_DIR
    from skrr.experiments.cli.run import run_job

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[
            "model=toyworld", "calibration=toyworld", "eval=toyworld", f"method={method}", "sparsity=[0.4]",
            "eval.metrics=[geneval,efficiency]", "threads=1", f"calibration.size={calib_size}",
            f"model.quantize={quantize}", f"paths.root={root}", "progress=false"])
    return run_job(cfg, "quantize")[0]


def t5_xxl_bytes(sparsity_plan: str = "paper:pixart_sigma/skrr@0.40") -> list[tuple[str, float]]:
    """T5-XXL encoder bytes, computed on meta: bf16; int8 Linear weights + one bf16 scale and one
    int8 zero point per output row (torchao Int8WeightOnly keeps the scale in the weight dtype)."""
    from transformers import T5Config, T5EncoderModel

    from skrr import Plan, apply_plan
    from skrr.presets import CONFIGS_DIR

    def build():
        config = T5Config(**json.loads((CONFIGS_DIR / "t5_v1_1_xxl.json").read_text()))
        with torch.device("meta"):
            return T5EncoderModel(config)

    def nbytes(model, int8: bool) -> float:
        total = 0
        linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
        for p in {id(p): p for p in model.parameters()}.values():
            if int8 and id(p) in linear_weights:
                total += p.numel() + p.shape[0] * (2 + 1)
            else:
                total += p.numel() * 2
        return total

    dense = build()
    pruned = build()
    plan = Plan.load(sparsity_plan)
    apply_plan(pruned, plan)
    return [("dense (bf16)", nbytes(dense, False)), ("dense + int8", nbytes(dense, True)),
            (f"Skrr {plan.sparsity:.1%} (bf16)", nbytes(pruned, False)), (f"Skrr {plan.sparsity:.1%} + int8", nbytes(pruned, True))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="runs/quantize")
    ap.add_argument("--calibration-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("toy world (measured on this machine's CPU; 192 prompts, 1 image each):")
    print(f"{'config':<18} {'sparsity':>8} {'encoder bytes':>14} {'x fp32 dense':>12}  GenEval overall [95% CI]")
    base = None
    for name, method, quantize in CONFIGS:
        row = run_row(args.root, method, quantize, args.calibration_size)
        nbytes = row["metrics"]["efficiency"]["encoder_bytes"]
        base = base or nbytes
        overall = row["metrics"]["geneval"]["overall"]  # the metric's own 95% interval (skrr.eval.intervals)
        point, (lo, hi) = overall["value"], overall["ci"]
        print(f"{name:<18} {row['sparsity']:>8.1%} {nbytes:>14,} {nbytes / base:>12.3f}  {point:.3f} [{lo:.3f}, {hi:.3f}]")
    print("\nT5-XXL encoder (computed from the meta-device build, not measured):")
    sizes = t5_xxl_bytes()
    for name, nbytes in sizes:
        print(f"{name:<22} {nbytes / 1e9:>6.2f} GB  {nbytes / sizes[0][1]:.3f} x bf16")


if __name__ == "__main__":
    main()
