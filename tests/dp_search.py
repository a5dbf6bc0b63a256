"""Worker for tests/test_distributed.py: every method on the given models, written as JSON by rank 0.

    python tests/dp_search.py OUT MODEL...                        # one process
    torchrun --nproc_per_node 2 tests/dp_search.py OUT MODEL...   # the same search, shared out
LaCo's merged weights are compared through a hash, every other field as is.
"""
import hashlib
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from skrr.models import load_text_side
from skrr.prune import make_context, prune
from skrr.search import distributed

CONF = Path(__file__).resolve().parents[1] / "conf" / "method"
CALIBRATION = {"source": "builtin", "pool": 200, "size": 20, "seed": 0}  # 5 batches of 4 + the null batch
METHODS = {  # small searches; Re-use switched on for the baselines so their D is shared out too
    "skrr": {"sparsity": 0.1, "beam_width": 2, "batch_size": 4},
    "shortgpt": {"sparsity": 0.1, "batch_size": 4, "reuse": True},
    "laco": {"sparsity": 0.1, "batch_size": 4, "T": 0.5, "reuse": True, "num_sim_prompts": 12},
    "finercut": {"sparsity": 0.1, "batch_size": 4, "null_term": True},
}


def digest(plan) -> dict:
    d = plan.to_dict()
    weights = plan.info.get("_weights") or {}
    d["info"] = {k: v for k, v in d["info"].items() if k != "_weights"}
    d["weights_sha"] = hashlib.sha256(b"".join(k.encode() + weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()
    return d


def main(out: str, models: list[str]) -> None:
    torch.set_num_threads(1)
    distributed.init_from_env("cpu", timeout_s=120)
    results = {}
    for model in models:
        side = load_text_side(model)
        for name, overrides in METHODS.items():
            method = OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), overrides)
            results[f"{model}/{name}"] = [digest(p) for p in prune(side, method, CALIBRATION, progress=False)]
    # which batches this rank searched, and the targets it holds
    disc = make_context(side, OmegaConf.create(CALIBRATION), batch_size=4, progress=False).discrepancy(
        metric="mse", projection=True, null_term=True)
    held = [bi for bi, b in enumerate(disc.batches) if b["target"] is not None]
    Path(f"{out}.rank{distributed.rank()}").write_text(json.dumps({"mine": disc.mine, "held": held,
                                                                  "batches": len(disc.batches)}))
    distributed.close()
    if distributed.env_world()[0] == 0:
        Path(out).write_text(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
