"""Full-size random-weight LLM text encoders (Qwen3-4B of FLUX.2-klein and of Z-Image): pruned save, load peaks.

    python benchmarks/realsize_llm.py --model z_image --workdir DIR [--sparsity 0.4] [--cache DIR]

Builds the encoder alone (once, bf16, random weights, from the shipped public config, cached under
$SKRR_CACHE/realsize or --cache, never in the repo) with the offline tokenizer; no denoiser (theirs
are 4-6B parameters and no phase reads them). Each phase runs in a fresh process and reads its peak
RSS after touching every weight, as benchmarks/realsize.py does (safetensors are memory-mapped:
pages never touched are never resident):

- dense: the encoder as skrr.models.load_pipeline loads it (from_pretrained, then prepare_encoder,
  which frees the layers after the deepest hidden state read and the final norm);
- prune: a fixed plan (whole layers from the middle of the read view until the target is reached:
  load peaks depend on how much is kept, not on which layers), what the pipeline reads for a short
  prompt (the readout: FLUX.2-klein's stacked 9/18/27, Z-Image's hidden_states[-2]), save_pruned;
- pruned: skrr.load_pruned's peak, and whether it reads what dense+plan read, bit for bit.
Prompts are padded to --tokens (not the pipelines' 512): a bf16 forward of 4B parameters is slow on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from realsize import (  # noqa: E402
    GIB,
    RandomFill,
    build_component,
    default_cache,
    peak_rss_gib,
    phase_result,
    reclaimed,
    rss_gib,
    touch,
    weight_gib,
)

MODELS = ("flux2_klein", "z_image")
PROMPT = "a photo of a cat"


def model_cfg(args):
    from skrr.models import model_config

    cfg = model_config(args.model)
    cfg.max_length = args.tokens  # a short prompt: the same encoder, a forward CPU can afford
    return cfg


def build(args, cfg) -> Path:
    """cache/<model>_encoder: the bf16 encoder folder and its tokenizer (built once)."""
    from skrr.models import CONFIGS_DIR, meta_components
    from skrr.models.tiny import qwen3_tokenizer

    spec = json.loads((CONFIGS_DIR / cfg.meta_configs).read_text())[cfg.text_encoder]
    root = Path(args.cache) / f"{args.model}_encoder"
    encoder_dir = root / cfg.text_encoder
    if not (encoder_dir / "config.json").is_file():
        print(f"building {spec['class']} (bf16) -> {encoder_dir}", file=sys.stderr)
        build_component(spec["class"], meta_components(cfg)[cfg.text_encoder], encoder_dir, torch.bfloat16, RandomFill(0))
    if not (root / cfg.tokenizer / "tokenizer_config.json").is_file():
        qwen3_tokenizer().save_pretrained(root / cfg.tokenizer)
    return root


def encoder_class(cfg):
    from skrr.models import CONFIGS_DIR, _import

    return _import(json.loads((CONFIGS_DIR / cfg.meta_configs).read_text())[cfg.text_encoder]["class"])


def fixed_plan(cfg, sparsity: float):
    """Whole layers from the middle of the read view outwards until `sparsity` of the counted part is removed."""
    from skrr import Plan
    from skrr.encoders.view import to_sub_blocks, total_params
    from skrr.models import meta_components, prepare_encoder

    encoder = meta_components(cfg)[cfg.text_encoder]
    view = to_sub_blocks(prepare_encoder(encoder, cfg))
    counted, layers = total_params(encoder), len(view.sub_block_params) // 2
    skip, removed = [], 0
    for b in sorted(range(layers), key=lambda b: (abs(b - (layers - 1) / 2), b)):
        if removed >= sparsity * counted:
            break
        skip += [2 * b, 2 * b + 1]
        removed += view.sub_block_params[2 * b] + view.sub_block_params[2 * b + 1]
    return Plan(skip=sorted(skip))


def read_states(encoder, root: Path, cfg) -> torch.Tensor:
    """What the pipeline takes from the encoder for PROMPT (skrr's feeding: bit for bit the pipeline's)."""
    from transformers import AutoTokenizer

    from skrr.models.feeding import feeding_for

    feeding = feeding_for(cfg, AutoTokenizer.from_pretrained(root / cfg.tokenizer))
    t = feeding.tokenize([PROMPT])
    with torch.no_grad():
        return feeding.encode(encoder, t["input_ids"], t["attention_mask"])


def file_bytes(files) -> int:
    from safetensors import safe_open

    n = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                s = st.get_slice(k)
                n += torch.Size(s.get_shape()).numel() * {"BF16": 2, "F16": 2, "F32": 4}[s.get_dtype()]
    return n


def load_dense(root: Path, cfg):
    from skrr.models import prepare_encoder

    encoder = encoder_class(cfg).from_pretrained(root / cfg.text_encoder, dtype=torch.bfloat16).eval()
    return prepare_encoder(encoder, cfg)  # as load_pipeline: the unread tail is freed


def phase_dense(args, cfg, root: Path) -> dict:
    from skrr.encoders.view import count_params

    before, start = rss_gib(), time.perf_counter()
    encoder = load_dense(root, cfg)
    touch(encoder)
    peak = peak_rss_gib()
    return {"dense_rss_before_gib": before, "dense_load_peak_gib": peak, "dense_load_s": time.perf_counter() - start,
            "dense_weights_gib": weight_gib(encoder), "dense_kept_params": count_params(encoder),
            "notes": reclaimed("dense load", before, peak, weight_gib(encoder))}


def phase_prune(args, cfg, root: Path) -> dict:
    from skrr import apply_plan, save_pruned
    from skrr.encoders.view import count_params, shipped_params
    from skrr.hub.pruned_io import WEIGHTS

    encoder = load_dense(root, cfg)
    plan = fixed_plan(cfg, args.sparsity)
    apply_plan(encoder, plan, name=cfg.name)
    start = time.perf_counter()
    torch.save(read_states(encoder, root, cfg), Path(args.workdir) / "dense_plan_read.pt")
    forward = time.perf_counter() - start
    directory = save_pruned(encoder, plan, Path(args.workdir) / "pruned")
    return {"sparsity": plan.sparsity, "skipped_sub_blocks": len(plan.skip), "forward_s": forward,
            "kept_over_shipped": count_params(encoder) / shipped_params(encoder),
            "pruned_over_dense_file_bytes": file_bytes([directory / WEIGHTS]) / file_bytes(sorted(
                (root / cfg.text_encoder).glob("*.safetensors")))}


def phase_pruned(args, cfg, root: Path) -> dict:
    from skrr import load_pruned

    before, start = rss_gib(), time.perf_counter()
    encoder = load_pruned(Path(args.workdir) / "pruned", dtype=torch.bfloat16)
    touch(encoder)
    peak = peak_rss_gib()
    seconds = time.perf_counter() - start
    expected = torch.load(Path(args.workdir) / "dense_plan_read.pt")
    return {"pruned_rss_before_gib": before, "pruned_load_peak_gib": peak, "pruned_load_s": seconds,
            "pruned_weights_gib": weight_gib(encoder),
            "pruned_reads_dense_plan": bool(torch.equal(read_states(encoder, root, cfg), expected)),
            "notes": reclaimed("pruned load", before, peak, weight_gib(encoder))}


PHASES = {"dense": phase_dense, "prune": phase_prune, "pruned": phase_pruned}


def spawn(args, phase: str, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--model", args.model, "--workdir", str(args.workdir),
           "--cache", str(args.cache), "--sparsity", str(args.sparsity), "--tokens", str(args.tokens),
           "--threads", str(args.threads)]
    return phase_result(cmd, phase)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="z_image", choices=MODELS)
    p.add_argument("--workdir", required=True, help="where the pruned encoder and the read states go")
    p.add_argument("--cache", default=None, help="the full-size encoder (default $SKRR_CACHE/realsize)")
    p.add_argument("--sparsity", type=float, default=0.4)
    p.add_argument("--tokens", type=int, default=24, help="the prompt's padded length")
    p.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 0 < args.sparsity < 1:
        raise SystemExit(f"--sparsity must be in (0, 1), got {args.sparsity}")
    args.cache = args.cache or str(default_cache())
    repo = Path(__file__).resolve().parents[1]
    for d in (Path(args.cache).resolve(), Path(args.workdir).resolve()):
        if d == repo or repo in d.parents:
            raise SystemExit(f"{d} is inside the repository; put checkpoints elsewhere (--cache / --workdir)")
    torch.set_num_threads(args.threads)
    cfg = model_cfg(args)
    if args.phase:
        root = Path(args.cache) / f"{args.model}_encoder"
        print("@result " + json.dumps({"notes": [], **PHASES[args.phase](args, cfg, root)}), flush=True)
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    root = build(args, cfg)
    print(f"[build: {time.perf_counter() - start:.0f} s] {root}", file=sys.stderr)
    r, notes = {}, []
    for phase in PHASES:
        r.update(spawn(args, phase, root))
        notes += r.pop("notes")
    r["pruned_over_dense_load_peak"] = r["pruned_load_peak_gib"] / r["dense_load_peak_gib"]
    r["pruned_over_dense_load_growth"] = ((r["pruned_load_peak_gib"] - r["pruned_rss_before_gib"])  # the load's own memory
                                          / (r["dense_load_peak_gib"] - r["dense_rss_before_gib"]))
    print(f"model: {args.model} ({cfg.text_encoder}, bf16, random weights), {time.perf_counter() - start:.0f} s")
    for k, v in r.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    for n in sorted(set(notes)):
        print(f"  note: {n}")
    print(f"  (GiB = {GIB} bytes)")


if __name__ == "__main__":
    main()
