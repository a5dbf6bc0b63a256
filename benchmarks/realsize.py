"""Every path at real size: full-size random-weight checkpoints from the shipped configs.

    python benchmarks/realsize.py --model pixart_sigma --plan PLAN.json --workdir DIR [--device cuda]

Builds (once, cached under $SKRR_CACHE/realsize or --cache, never in the repo) a loadable pipeline
directory with the real architectures: text encoders in bf16, the denoiser in fp32 (so the text
side has to cast what it reads), random weights, an offline tokenizer (trained in process: the
real vocabulary is irrelevant to random weights, but prompts tokenize to other lengths). Then each
phase runs in a fresh process, its peak RSS read after every weight has been touched
(safetensors are memory-mapped: untouched pages are not resident):

- encoder: dense T5 load peak, and the weights fingerprint's time on it
- prune: apply the plan, save the pruned encoder to DIR/pruned, record dense+plan on a short input
- pruned: pruned load peak; equal to dense+plan on that input?
- text_side: skrr.models.load_text_side peak (encoder + tokenizer + projection) minus the encoder's
- forward: time ratios on a mid-size T5 (fast on CPU): sub-block encoder / stock, pruned / dense
- table: the paper's Table 2 (parameters, bf16 weight memory, TFLOPs of a 512x512 image), FLOPs
  counted on the meta device (shapes only) as skrr.experiments.runner.efficiency books them: encoder once, denoiser
  x steps (x2 under CFG), VAE decode once
- cuda (--device cuda): peak CUDA memory of a 512x512 generation, dense and pruned
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

GIB = 1024 ** 3
SHARD_BYTES = 2 * 10 ** 9
PROMPT = "a photo of a cat"  # short: a full-size bf16 forward on CPU is slow
STEPS = {"pixart": 20, "sd3": 28, "flux": 28}  # sampling steps of a 512x512 image (the paper's protocol for PixArt)
SCHEDULERS = {"pixart": "DPMSolverMultistepScheduler", "sd3": "FlowMatchEulerDiscreteScheduler",
              "flux": "FlowMatchEulerDiscreteScheduler"}
# mid-size T5 for the forward-time ratios: T5-base's width, 24 blocks (48 sub-blocks, like XXL, so
# the plan applies), 16 tokens: about 0.2B parameters, fast on a 2-core CPU
MID_T5 = dict(vocab_size=32128, d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=24,
              feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1)


def default_cache() -> Path:
    from skrr.models.tiny import cache_root

    return cache_root() / "realsize"


# ----------------------------------------------------------------------------- weights
class RandomFill:
    """Fast random weights: slices of one seeded Gaussian pool, copied (memory speed, any dtype) and
    scaled, instead of per-element RNG and the libraries' slow initialisers."""

    def __init__(self, seed: int = 0, size: int = 1 << 24):
        self.gen = torch.Generator().manual_seed(seed)
        self.pool = torch.randn(size, generator=self.gen)

    def __call__(self, t: torch.Tensor, std: float) -> torch.Tensor:
        flat, n, size = t.view(-1), t.numel(), self.pool.numel()
        off, i = int(torch.randint(size, (1,), generator=self.gen)), 0
        while i < n:
            take = min(n - i, size - off)
            flat[i:i + take].copy_(self.pool[off:off + take])
            i, off = i + take, 0
        return t.mul_(std)


def init_tensor(fill: RandomFill, module: nn.Module, name: str, t: torch.Tensor) -> torch.Tensor:
    owner = module.get_submodule(name.rpartition(".")[0])
    if isinstance(owner, nn.Embedding):
        return fill(t, 1.0)
    if t.dim() >= 2:  # keep activations O(1) through the stack: std = fan_in^-1/2
        return fill(t, t[0].numel() ** -0.5)
    return t.fill_(1.0) if name.endswith("weight") else fill(t, 0.02)  # norm scales / biases


def unique_state(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Floating tensors of the state dict, tied ones once (as save_pretrained stores them)."""
    seen, out = set(), []
    for name, t in module.state_dict(keep_vars=True).items():
        if id(t) not in seen and t.is_floating_point():
            seen.add(id(t))
            out.append((name, t))
    return out


def write_weights(module: nn.Module, out: Path, dtype: torch.dtype, stem: str, fill: RandomFill, label: str) -> int:
    """Sharded safetensors + index of `module` (built on meta) with random values, one shard in memory at a time."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from skrr.hub.atomic import atomic_path

    entries = unique_state(module)
    shards, size = [[]], 0
    for name, t in entries:
        nbytes = t.numel() * dtype.itemsize
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, t))
        size += nbytes
    weight_map, total = {}, 0
    bar = tqdm(total=sum(t.numel() for _, t in entries) * dtype.itemsize / GIB, unit="GiB", desc=f"write {label}",
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} GiB [{elapsed}]")
    for k, shard in enumerate(shards, 1):
        fname = f"{stem}-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, t in shard:
            tensors[name] = init_tensor(fill, module, name, torch.empty(t.shape, dtype=dtype))
            weight_map[name] = fname
            total += tensors[name].numel() * dtype.itemsize
            bar.update(tensors[name].numel() * dtype.itemsize / GIB)
        with atomic_path(out / fname) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        del tensors
    bar.close()
    (out / f"{stem}.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return total


def build_component(cls_path: str, module: nn.Module, out: Path, dtype: torch.dtype, fill: RandomFill) -> None:
    from skrr.hub.atomic import atomic_path

    with atomic_path(out, directory=True) as tmp:
        if cls_path.startswith("transformers."):
            module.config.dtype = dtype
            module.config.save_pretrained(tmp)
            write_weights(module, tmp, dtype, "model", fill, out.name)
        else:
            module.save_config(tmp)
            write_weights(module, tmp, dtype, "diffusion_pytorch_model", fill, out.name)


def build(model: str, cache: Path) -> Path:
    """The pipeline dir cache/<model>: components cached under cache/components (T5-XXL once for
    all three models), linked in; model_index.json, tokenizers and scheduler written directly."""
    import diffusers

    from skrr.models import CONFIGS_DIR, meta_components, model_config
    from skrr.models.tiny import clip_tokenizer, t5_tokenizer

    cfg = model_config(model)
    spec = json.loads((CONFIGS_DIR / cfg.meta_configs).read_text())
    pipe_dir = cache / model
    index = {"_class_name": cfg.pipeline.pipeline_class.rpartition(".")[2], "_diffusers_version": diffusers.__version__}
    pipe_dir.mkdir(parents=True, exist_ok=True)
    modules = None
    fill = RandomFill(0)
    for name, c in spec.items():
        lib, _, cls_name = c["class"].rpartition(".")
        index[name] = [lib, cls_name]
        key = Path(c["config_file"]).stem if "config_file" in c else f"{model}_{name}"
        denoiser = name == cfg.projection.partition(".")[0]
        dtype = torch.float32 if denoiser and cfg.family != "flux" else torch.bfloat16
        target = cache / "components" / f"{key}_{str(dtype).split('.')[1]}"
        if not (target / "config.json").is_file():
            modules = modules or meta_components(cfg)
            print(f"building {name} ({c['class']}, {dtype}) -> {target}", file=sys.stderr)
            build_component(c["class"], modules[name], target, dtype, fill)
        link = pipe_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
        if name.startswith("text_encoder"):
            tok = "tokenizer" + name[len("text_encoder"):]
            t5 = "T5" in cls_name
            (t5_tokenizer() if t5 else clip_tokenizer()).save_pretrained(pipe_dir / tok)
            index[tok] = ["transformers", "T5TokenizerFast" if t5 else "CLIPTokenizerFast"]
    scheduler = getattr(diffusers, SCHEDULERS[cfg.family])()
    scheduler.save_config(pipe_dir / "scheduler")
    index["scheduler"] = ["diffusers", type(scheduler).__name__]
    (pipe_dir / "model_index.json").write_text(json.dumps(index, indent=2))
    return pipe_dir


# ----------------------------------------------------------------------------- phases (fresh processes)
def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / GIB
    return 0.0


def weight_gib(*modules: nn.Module) -> float:
    return sum(t.numel() * t.element_size() for m in modules
               for t in {id(t): t for t in [*m.parameters(), *m.buffers()]}.values()) / GIB


def reclaimed(phase: str, before: float, peak: float, weights: float) -> list[str]:
    """Memory-mapped pages are clean: a busy machine reclaims them while we touch the rest, and the
    peak then reads low. Say so instead of reporting a low figure as measured."""
    if peak < before + 0.98 * weights:
        return [f"{phase}: peak {peak:.2f} GiB < {before:.2f} before load + {weights:.2f} GiB of weights: pages were "
                "reclaimed (memory pressure from other processes); rerun on a quieter machine"]
    return []


def touch(*modules: nn.Module) -> float:
    """Read one element of every 4 KiB page of every tensor, so memory-mapped weights are resident."""
    acc = 0.0
    for m in modules:
        for t in {id(t): t for t in [*m.parameters(), *m.buffers()]}.values():
            acc += float(t.detach().reshape(-1)[::max(1, 4096 // t.element_size())].float().sum())
    return acc


def short_input(pipe_dir: Path, cfg):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pipe_dir / cfg.tokenizer)
    t = tok([PROMPT], padding="max_length", max_length=12, truncation=True, return_tensors="pt")
    return t.input_ids, t.attention_mask


def load_dense(pipe_dir: Path, cfg):
    from transformers import T5EncoderModel

    return T5EncoderModel.from_pretrained(pipe_dir / cfg.text_encoder, dtype=torch.bfloat16).eval()


def phase_encoder(args, cfg, pipe_dir: Path) -> dict:
    from skrr.search.calibration import weights_fingerprint

    before = rss_gib()
    enc = load_dense(pipe_dir, cfg)
    touch(enc)
    peak = peak_rss_gib()
    notes = reclaimed("dense load", before, peak, weight_gib(enc))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        weights_fingerprint(enc)
        times.append(time.perf_counter() - start)
    return {"dense_load_peak_gib": peak, "fingerprint_s": min(times), "notes": notes}


def phase_prune(args, cfg, pipe_dir: Path) -> dict:
    from safetensors import safe_open

    from skrr import Plan, apply_plan, save_pruned
    from skrr.hub.pruned_io import WEIGHTS

    def file_bytes(files):
        n = 0
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    s = st.get_slice(k)
                    n += torch.Size(s.get_shape()).numel() * getattr(torch, {"BF16": "bfloat16", "F32": "float32",
                                                                               "F16": "float16"}[s.get_dtype()]).itemsize
        return n

    enc = load_dense(pipe_dir, cfg)
    plan = Plan.load(args.plan)
    apply_plan(enc, plan, name=cfg.name)
    ids, mask = short_input(pipe_dir, cfg)
    with torch.no_grad():
        out = enc(input_ids=ids, attention_mask=mask)[0]
    torch.save(out, Path(args.workdir) / "dense_plan_output.pt")
    directory = save_pruned(enc, plan, Path(args.workdir) / "pruned")
    dense = file_bytes(sorted((pipe_dir / cfg.text_encoder).glob("*.safetensors")))
    return {"sparsity": plan.sparsity, "expected_ratio": 1 - plan.sparsity,
            "pruned_bytes_ratio": file_bytes([directory / WEIGHTS]) / dense}


def phase_pruned(args, cfg, pipe_dir: Path) -> dict:
    from skrr import load_pruned

    before = rss_gib()
    enc = load_pruned(Path(args.workdir) / "pruned")
    touch(enc)
    peak = peak_rss_gib()
    notes = reclaimed("pruned load", before, peak, weight_gib(enc))
    ids, mask = short_input(pipe_dir, cfg)
    with torch.no_grad():
        out = enc(input_ids=ids, attention_mask=mask)[0]
    expected = torch.load(Path(args.workdir) / "dense_plan_output.pt")
    return {"pruned_load_peak_gib": peak, "pruned_equals_dense_plan": bool(torch.equal(out, expected)), "notes": notes}


def phase_text_side(args, cfg, pipe_dir: Path) -> dict:
    from skrr.models import load_text_side, read_from

    before = rss_gib()
    side = load_text_side(read_from(cfg, pipe_dir), dtype=torch.bfloat16)
    touch(side.encoder, side.projection)
    peak = peak_rss_gib()
    return {"text_side_peak_gib": peak, "notes": reclaimed("text side", before, peak, weight_gib(side.encoder, side.projection)),
            "projection": f"{type(side.projection).__name__} {next(side.projection.parameters()).dtype}"}


def phase_forward(args, cfg, pipe_dir: Path) -> dict:
    """Interleaved repeats, median ratio: stock T5 vs sub-block (empty plan), then pruned vs dense."""
    import copy

    from transformers import T5Config, T5EncoderModel

    from skrr import Plan, apply_plan, to_sub_blocks

    with torch.device("meta"):
        stock = T5EncoderModel(T5Config(**MID_T5))
    stock.to_empty(device="cpu")
    fill = RandomFill(1)
    with torch.no_grad():
        for name, t in unique_state(stock):
            init_tensor(fill, stock, name, t)
    stock.tie_weights()
    stock.eval()
    sub = copy.deepcopy(stock)
    to_sub_blocks(sub)
    pruned = copy.deepcopy(sub)
    apply_plan(pruned, Plan.load(args.plan))
    ids = torch.randint(2, MID_T5["vocab_size"], (1, 16), generator=torch.Generator().manual_seed(0))

    def ratio(a, b, repeats=args.repeats):
        ta, tb = [], []
        with torch.no_grad():
            a(input_ids=ids), b(input_ids=ids)  # warm-up
            for _ in range(repeats):
                for m, ts in ((a, ta), (b, tb)):
                    start = time.perf_counter()
                    m(input_ids=ids)
                    ts.append(time.perf_counter() - start)
        return statistics.median(x / y for x, y in zip(ta, tb))

    with torch.no_grad():
        same = torch.equal(sub(input_ids=ids)[0], stock(input_ids=ids)[0])
    return {"stock_forward_ratio": ratio(sub, stock), "pruned_forward_ratio": ratio(pruned, sub),
            "sub_block_equals_stock": same}


def denoiser_flops(cfg, denoiser: nn.Module, tokens: int) -> tuple[int, int]:
    """FLOPs of one denoiser call at 512x512 and the calls per image (x2 under CFG)."""
    from torch.utils.flop_counter import FlopCounterMode

    steps = STEPS[cfg.family]
    with torch.device("meta"):
        if cfg.family == "pixart":  # CFG doubles the batch
            kwargs = dict(hidden_states=torch.empty(2, 4, 64, 64), encoder_hidden_states=torch.empty(2, tokens, 4096),
                          timestep=torch.empty(2), encoder_attention_mask=torch.ones(2, tokens),
                          added_cond_kwargs={"resolution": None, "aspect_ratio": None})
        elif cfg.family == "sd3":  # CLIP-L + bigG (77 tokens, padded to 4096) + T5 tokens
            kwargs = dict(hidden_states=torch.empty(2, 16, 64, 64), encoder_hidden_states=torch.empty(2, 77 + tokens, 4096),
                          pooled_projections=torch.empty(2, 2048), timestep=torch.empty(2))
        else:  # FLUX: guidance-distilled, no CFG; 2x2-packed latents
            kwargs = dict(hidden_states=torch.empty(1, 1024, 64), encoder_hidden_states=torch.empty(1, tokens, 4096),
                          pooled_projections=torch.empty(1, 768), timestep=torch.empty(1), img_ids=torch.zeros(1024, 3),
                          txt_ids=torch.zeros(tokens, 3), guidance=torch.empty(1))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        denoiser(**kwargs)
    return counter.get_total_flops(), steps


def phase_table(args, cfg, pipe_dir: Path) -> dict:
    """Table 2 on the meta device: what a GPU user would see, from shapes alone."""
    from torch.utils.flop_counter import FlopCounterMode

    from skrr import Plan, apply_plan
    from skrr.encoders.view import count_params
    from skrr.models import meta_components

    def flops(fn):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn()
        return counter.get_total_flops()

    parts = meta_components(cfg)
    tokens = int(cfg.max_length)
    denoiser = parts[cfg.projection.partition(".")[0]]
    notes = []
    try:
        per_call, calls = denoiser_flops(cfg, denoiser, tokens)
        denoiser_total = per_call * calls
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        denoiser_total = None
        notes.append(f"denoiser FLOPs skipped: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    vae = parts["vae"]
    vae_total = flops(lambda: vae.decode(torch.empty(1, vae.config.latent_channels, 64, 64, device="meta")))
    others = {n: m for n, m in parts.items() if n.startswith("text_encoder") and n != cfg.text_encoder}
    clip_total = sum(flops(lambda m=m: m(input_ids=torch.zeros(1, 77, dtype=torch.long, device="meta"))) for m in others.values())

    def row(encoder):
        enc_flops = flops(lambda: encoder(input_ids=torch.zeros(1, tokens, dtype=torch.long, device="meta")))
        params = sum(count_params(m) for n, m in parts.items() if n != cfg.text_encoder) + count_params(encoder)
        total = None if denoiser_total is None else enc_flops + clip_total + denoiser_total + vae_total
        return {"params_b": params / 1e9, "weights_gib_bf16": params * 2 / GIB, "encoder_params_b": count_params(encoder) / 1e9,
                "encoder_tflops": enc_flops / 1e12, "tflops": None if total is None else total / 1e12}

    dense = row(parts[cfg.text_encoder])
    encoder = parts[cfg.text_encoder]
    apply_plan(encoder, Plan.load(args.plan), name=cfg.name)
    return {"table": {"dense": dense, "pruned": row(encoder)}, "table_notes": notes}


def phase_cuda(args, cfg, pipe_dir: Path) -> dict:
    """Peak CUDA memory of one 512x512 generation (load included), dense or pruned (args.variant)."""
    from skrr import load_pruned
    from skrr.eval.generate import SamplerConfig, pipeline_kwargs
    from skrr.models import load_pipeline, read_from

    device = torch.device(args.device)
    torch.cuda.reset_peak_memory_stats(device)
    extra = {}
    if args.variant == "pruned":
        extra[cfg.text_encoder] = load_pruned(Path(args.workdir) / "pruned", device=device, dtype=torch.bfloat16)
    pipe = load_pipeline(read_from(cfg, pipe_dir), device=device, dtype=torch.bfloat16, **extra)
    pipe.set_progress_bar_config(disable=True)
    sampler = SamplerConfig(height=512, width=512, num_inference_steps=STEPS[cfg.family], batch_size=1)
    pipe(prompt=[PROMPT], generator=[torch.Generator().manual_seed(0)], **pipeline_kwargs(pipe, sampler))
    torch.cuda.synchronize(device)
    return {f"cuda_peak_gib_{args.variant}": torch.cuda.max_memory_allocated(device) / GIB}


PHASES = {"encoder": phase_encoder, "prune": phase_prune, "pruned": phase_pruned, "text_side": phase_text_side,
          "forward": phase_forward, "table": phase_table, "cuda": phase_cuda}


def run_phase(args) -> None:
    from skrr.models import build_model, model_config

    torch.set_num_threads(args.threads)
    cfg = model_config(args.model)
    build_model(cfg).pipeline.load_class()  # every load phase pays the same imports, so peaks compare
    pipe_dir = Path(args.pipeline_dir)
    result = {"notes": [], **PHASES[args.phase](args, cfg, pipe_dir)}
    print("@result " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- driver
def spawn(args, phase: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--model", args.model, "--plan", str(args.plan),
           "--workdir", str(args.workdir), "--pipeline-dir", str(args.pipeline_dir), "--threads", str(args.threads),
           "--device", args.device, "--repeats", str(args.repeats)]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    return phase_result(cmd, f"{phase}{' ' + str(extra) if extra else ''}")


def phase_result(cmd: list[str], label: str) -> dict:
    """One phase in a fresh process (its own peak RSS): the dict it printed as its `@result` line."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@result ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"phase {label} failed (exit {proc.returncode}); its stderr is above")
    print(f"[phase {label}: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    return json.loads(lines[-1][len("@result "):])


def check_args(args):
    from skrr import Plan
    from skrr.models import model_config

    cfg = model_config(args.model)  # unknown model: KeyError with the choices
    if not cfg.get("meta_configs"):
        raise SystemExit(f"model {args.model!r} has no shipped config (meta_configs); use pixart_sigma, sd3_medium or flux_dev")
    Plan.load(args.plan)  # missing / malformed plan fails here, before any heavy work
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    repo = Path(__file__).resolve().parents[1]
    for p in (Path(args.cache).resolve(), Path(args.workdir).resolve()):
        if p == repo or repo in p.parents:
            raise SystemExit(f"{p} is inside the repository; put checkpoints elsewhere (--cache / --workdir)")
    return cfg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pixart_sigma", choices=["pixart_sigma", "sd3_medium", "flux_dev"])
    p.add_argument("--plan", required=True, help="plan JSON (a `skip` list is enough)")
    p.add_argument("--workdir", required=True, help="where the pruned encoder and intermediate outputs go")
    p.add_argument("--cache", default=None, help="full-size checkpoints (default $SKRR_CACHE/realsize)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per forward ratio")
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    p.add_argument("--pipeline-dir", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["dense", "pruned"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        return run_phase(args)
    args.cache = args.cache or str(default_cache())
    cfg = check_args(args)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    args.pipeline_dir = build(args.model, Path(args.cache))
    print(f"[build: {time.perf_counter() - start:.0f} s] pipeline dir: {args.pipeline_dir}", file=sys.stderr)
    r, notes = {}, []
    for phase in ("encoder", "prune", "pruned", "text_side", "forward", "table"):
        r.update(spawn(args, phase))
        notes += r.pop("notes")
    if args.device == "cuda":
        for variant in ("dense", "pruned"):
            r.update(spawn(args, "cuda", variant=variant))
            notes += r.pop("notes")
    r["notes"] = sorted(set(notes))
    r["text_side_extra_gib"] = r["text_side_peak_gib"] - r["dense_load_peak_gib"]
    report(args, cfg, r, time.perf_counter() - start)


def report(args, cfg, r: dict, wall: float) -> None:
    lines = [("model", cfg.name), ("pipeline_dir", args.pipeline_dir),
             ("sparsity", f"{100 * r['sparsity']:.2f}%"),
             ("dense_load_peak_gib", f"{r['dense_load_peak_gib']:.2f}"),
             ("pruned_load_peak_gib", f"{r['pruned_load_peak_gib']:.2f}"),
             ("pruned_load_peak_over_dense", f"{r['pruned_load_peak_gib'] / r['dense_load_peak_gib']:.3f}"),
             ("pruned_bytes_ratio", f"{r['pruned_bytes_ratio']:.5f}"), ("expected_ratio", f"{r['expected_ratio']:.5f}"),
             ("pruned_equals_dense_plan", str(r["pruned_equals_dense_plan"]).lower()),
             ("text_side_peak_gib", f"{r['text_side_peak_gib']:.2f}"),
             ("text_side_extra_gib", f"{r['text_side_extra_gib']:.2f}"),
             ("text_side_projection", r["projection"]),
             ("fingerprint_s", f"{r['fingerprint_s']:.3f}"),
             ("stock_forward_ratio", f"{r['stock_forward_ratio']:.3f}"),
             ("sub_block_equals_stock", str(r["sub_block_equals_stock"]).lower()),
             ("pruned_forward_ratio", f"{r['pruned_forward_ratio']:.3f}")]
    for variant in ("dense", "pruned"):
        if f"cuda_peak_gib_{variant}" in r:
            lines.append((f"cuda_generation_peak_gib_{variant}", f"{r[f'cuda_peak_gib_{variant}']:.2f}"))
    if args.device != "cuda":
        lines.append(("cuda_generation_peak", "skipped (run with --device cuda on a GPU)"))
    lines.append(("wall_s", f"{wall:.0f}"))
    for k, v in lines:
        print(f"{k}: {v}")
    for note in r["notes"] + r["table_notes"]:
        print(f"note: {note}")
    t = r["table"]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    print(f"\nTable 2 ({cfg.name}, 512x512, {STEPS[cfg.family]} steps; meta-device FLOPs, bf16 weight memory):")
    print(f"{'':8} {'params (B)':>11} {'weights (GiB)':>14} {'encoder (B)':>12} {'encoder TFLOPs':>15} {'TFLOPs/image':>13}")
    for name in ("dense", "pruned"):
        x = t[name]
        print(f"{name:8} {x['params_b']:>11.3f} {x['weights_gib_bf16']:>14.2f} {x['encoder_params_b']:>12.3f} "
              f"{x['encoder_tflops']:>15.3f} {fmt(x['tflops'], '>13.2f')}")


if __name__ == "__main__":
    main()
