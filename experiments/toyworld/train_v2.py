"""Train toy world v2 on CPU: a T5-XXL-shaped encoder (24 blocks, gated-GELU, d_ff = 2.5 d_model)
that states the scene in its token states, then a PixArt denoiser reading it.

    python -m skrr.experiments.toyworld.train_v2 encoder --minutes 14 --steps 500
    python -m skrr.experiments.toyworld.train_v2 denoiser --minutes 48
    python -m skrr.experiments.toyworld.train_v2 export --out experiments/toyworld/weights_v2
    python -m skrr.experiments.toyworld.train_v2 evaluate --out experiments/toyworld/weights_v2

Each training stage checkpoints to --work (runs/toyworld_v2) every few minutes and, run again,
resumes where it stopped (same data stream; the LR schedule follows the stage's own training
clock, so a resume with a different --minutes moves the schedule, and a rerun on another
machine reaches a similar, not an identical, model).

Encoder: word identity plus, from every token state, what the caption says about the object
that word describes (structure.caption_targets: shape, colour, count, row, column, relation)
and how many objects the scene has. This is the supervision a 5-minute masked-word encoder
lacked; the heads are thrown away and the encoder is frozen, as real pipelines freeze T5.
The vocabulary is padded (as T5 pads 32100 pieces to 32128) to 512 rows so that one attention
sub-block is 1.41% and one FFN 2.64% of the encoder's parameters, T5-XXL's shares.
Denoiser: the shipped v1 denoiser (it already draws the shapes in their cells) fine-tuned to
read the new encoder: x0-prediction on 32x32 pixels, timesteps drawn with extra weight on the
noisy part (where layouts are decided), a caption mix weighted to the relational tasks, and
guidance-aware targets so that CFG at the evaluation's scale (4.5) samples like CFG at 1.5.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, PixArtTransformer2DModel
from tqdm import tqdm
from transformers import T5Config, T5EncoderModel

from skrr.experiments.toyworld import WEIGHTS as V1_WEIGHTS
from skrr.experiments.toyworld.captions import PREFIXES, sample_example
from skrr.experiments.toyworld.pipeline import MAX_LENGTH, ToyWorldPipeline
from skrr.experiments.toyworld.scenes import render
from skrr.experiments.toyworld.structure import HEADS, IGNORE, caption_targets
from skrr.experiments.toyworld.tokenizer import build_tokenizer
from skrr.experiments.toyworld.train import ema_update, optimizer_step

ENCODER = dict(d_model=64, d_kv=16, num_heads=4, d_ff=160, num_layers=24, vocab_size=512,
               batch=64, lr=2e-3, warmup=50, long_share=0.2)
# The denoiser starts from the shipped v1 denoiser (it already draws the shapes in their cells;
# it learns to read the new encoder), so it keeps v1's architecture.
DENOISER = dict(init="v1", batch=64, lr=3e-4, warmup=50, ema=0.998, cfg_dropout=0.1, high_noise=0.5,
                high_noise_from=300, guided_for=4.5, guided_effective=1.5, guided_after=0.0)
MIX = {"single_object": 0.06, "two_object": 0.12, "counting": 0.18, "colors": 0.06, "position": 0.24,
       "color_attr": 0.24, "long": 0.10}
CHECKPOINT_EVERY = 180.0  # seconds of training
# The full toy GenEval set: 320 prompts per task, 1,920 in all (an overall near 0.8 is then known to
# about +-0.02 at 95%); its first 192 prompts and seeds are the demo's 192.
FULL_GENEVAL = dict(n=1920, seed=0)


def sample_batch(rng: np.random.Generator, n: int, mix=MIX):
    tasks = list(mix)
    p = np.array([mix[t] for t in tasks]) / sum(mix.values())
    examples = [sample_example(tasks[int(rng.choice(len(tasks), p=p))], rng, PREFIXES[int(rng.integers(len(PREFIXES)))])
                for _ in range(n)]
    return [e[0] for e in examples], [e[1] for e in examples]


def tokenize(tokenizer, texts):
    enc = tokenizer(texts, padding="longest", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def structure_targets(texts, length: int) -> dict[str, torch.Tensor]:
    """(B, length) targets per head; one token per word, then </s> (the scene count only) and padding."""
    out = {h: torch.full((len(texts), length), IGNORE, dtype=torch.long) for h in HEADS}
    for i, text in enumerate(texts):
        t = caption_targets(text)
        n = min(len(text.split()), length)
        for h in HEADS:
            out[h][i, :n] = torch.tensor(t[h][:n])
        if n < length:
            out["objects"][i, n] = t["objects"][0]
    return out


def build_encoder(cfg) -> T5EncoderModel:
    config = T5Config(vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], d_kv=cfg["d_kv"], d_ff=cfg["d_ff"],
                      num_layers=cfg["num_layers"], num_heads=cfg["num_heads"], feed_forward_proj="gated-gelu",
                      dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False,
                      pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config)


class Checkpoint:
    """Model/optimizer/RNG state in one file, written atomically; `elapsed` is the stage's training clock."""

    def __init__(self, path: Path):
        self.path = path

    def save(self, **state):
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)

    def load(self):
        return torch.load(self.path, weights_only=False) if self.path.exists() else None


def lr_at(cfg, step, progress):
    return cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train_encoder(args):
    cfg = {**ENCODER, "minutes": args.minutes, "steps": args.steps, "seed": args.seed}
    tokenizer = build_tokenizer()
    encoder = build_encoder(cfg)
    heads = torch.nn.ModuleDict({"word": torch.nn.Linear(cfg["d_model"], len(tokenizer)),
                                 **{h: torch.nn.Linear(cfg["d_model"], k) for h, k in HEADS.items()}})
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    ckpt = Checkpoint(args.work / "encoder.pt")
    step, elapsed, log = 0, 0.0, []
    if (state := ckpt.load()) is not None:
        encoder.load_state_dict(state["encoder"]), heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state, step, elapsed, log = state["rng"], state["step"], state["elapsed"], state["log"]
        cfg = state["cfg"]
        print(f"resuming the encoder at step {step} ({elapsed / 60:.1f} of {cfg['minutes']} min)")
    budget = cfg["minutes"] * 60
    bar = tqdm(desc="encoder (scene-structure targets)", initial=step)
    last_save = elapsed
    while elapsed < budget and step < cfg["steps"]:
        t0 = time.time()
        # a batch is all long captions or all short ones, so short ones are not padded to 40 tokens
        long = rng.random() < cfg["long_share"]
        _, texts = sample_batch(rng, cfg["batch"], {"long": 1.0} if long else {**MIX, "long": 0.0})
        ids, attn = tokenize(tokenizer, texts)
        targets = structure_targets(texts, ids.shape[1])
        targets["word"] = ids.masked_fill(attn == 0, IGNORE)
        hidden = encoder(input_ids=ids, attention_mask=attn).last_hidden_state
        losses = {h: F.cross_entropy(head(hidden).transpose(1, 2), targets[h], ignore_index=IGNORE)
                  for h, head in heads.items()}
        loss = sum(losses.values())
        lr = lr_at(cfg, step, max(elapsed / budget, step / cfg["steps"]))
        optimizer_step(opt, params, loss, lr)
        step += 1
        elapsed += time.time() - t0
        bar.update()
        if step % 25 == 0:
            with torch.no_grad():
                acc = {h: round((head(hidden).argmax(-1) == targets[h])[targets[h] != IGNORE].float().mean().item(), 4)
                       for h, head in heads.items()}
            log.append({"step": step, "minutes": round(elapsed / 60, 2), "cpu_s": round(time.process_time()), "loss": round(loss.item(), 4), "acc": acc})
            bar.set_postfix(loss=f"{loss.item():.3f}", worst=f"{min(acc.values()):.3f}")
            print(json.dumps(log[-1]), flush=True)
        if elapsed - last_save > CHECKPOINT_EVERY or elapsed >= budget or step >= cfg["steps"]:
            ckpt.save(encoder=encoder.state_dict(), heads=heads.state_dict(), opt=opt.state_dict(),
                      rng=rng.bit_generator.state, step=step, elapsed=elapsed, log=log, cfg=cfg)
            last_save = elapsed
    encoder.save_pretrained(args.work / "text_encoder")
    (args.work / "encoder.json").write_text(json.dumps({"config": cfg, "steps": step, "minutes": elapsed / 60,
                                                         "last": log[-1] if log else None}, indent=2) + "\n")


def sample_timesteps(cfg, n, gen):
    """Uniform over 0..999, except that a `high_noise` share is drawn from the noisy part only."""
    t = torch.randint(0, 1000, (n,), generator=gen)
    high = torch.randint(cfg["high_noise_from"], 1000, (n,), generator=gen)
    return torch.where(torch.rand(n, generator=gen) < cfg["high_noise"], high, t)


def build_denoiser(cfg, d_text):
    model = PixArtTransformer2DModel.from_pretrained(V1_WEIGHTS / "transformer")
    if model.config.caption_channels != d_text:
        raise SystemExit(f"the v1 denoiser reads {model.config.caption_channels}-wide text states, the encoder has {d_text}")
    return model


class EncoderCache:
    """Frozen encoder states per caption: the GenEval-style captions are a few thousand distinct
    strings, so after warm-up the 24-block encoder costs the denoiser's training almost nothing."""

    def __init__(self, encoder, tokenizer, limit: int = 100_000):
        self.encoder, self.tokenizer, self.limit, self.states = encoder, tokenizer, limit, {}

    @torch.no_grad()
    def __call__(self, texts):
        missing = list(dict.fromkeys(t for t in texts if t not in self.states))
        if missing:
            ids, attn = tokenize(self.tokenizer, missing)
            hidden = self.encoder(input_ids=ids, attention_mask=attn).last_hidden_state
            for text, h, m in zip(missing, hidden, attn):
                if len(self.states) < self.limit:
                    self.states[text] = h[: int(m.sum())].clone()
        if any(t not in self.states for t in texts):  # cache full: encode this batch directly
            ids, attn = tokenize(self.tokenizer, texts)
            return self.encoder(input_ids=ids, attention_mask=attn).last_hidden_state, attn
        length = max(len(self.states[t]) for t in texts)
        cond = torch.zeros(len(texts), length, self.encoder.config.d_model)
        attn = torch.zeros(len(texts), length, dtype=torch.long)
        for i, t in enumerate(texts):
            n = len(self.states[t])
            cond[i, :n], attn[i, :n] = self.states[t], 1
        return cond, attn


def with_settings(cfg: dict, settings: list[str]) -> dict:
    """cfg with KEY=VALUE settings applied (mix.TASK=share for the caption mix); unknown keys fail."""
    for item in settings:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node.get(part) if isinstance(node.get(part), dict) else None
            if node is None:
                break
        if not value or node is None or leaf not in node:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(cfg)} or mix.<task>")
        node[leaf] = type(node[leaf])(value) if not isinstance(node[leaf], bool) else value == "true"
    return cfg


def train_denoiser(args):
    cfg = with_settings({**DENOISER, "minutes": args.minutes, "seed": args.seed + 1, "mix": dict(MIX)}, args.set)
    cfg["runs"] = [{"from_step": 0, "minutes": args.minutes, "settings": list(args.set)}]
    tokenizer = build_tokenizer()
    encoder = T5EncoderModel.from_pretrained(args.work / "text_encoder").eval().requires_grad_(False)
    model = build_denoiser(cfg, encoder.config.d_model)
    ema = PixArtTransformer2DModel.from_config(model.config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                prediction_type="sample", clip_sample=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0)
    rng, gen = np.random.default_rng(cfg["seed"]), torch.Generator().manual_seed(cfg["seed"])
    ckpt = Checkpoint(args.work / "denoiser.pt")
    step, elapsed, log = 0, 0.0, []
    if (state := ckpt.load()) is not None:
        model.load_state_dict(state["model"]), ema.load_state_dict(state["ema"]), opt.load_state_dict(state["opt"])
        rng.bit_generator.state, step, elapsed, log = state["rng"], state["step"], state["elapsed"], state["log"]
        gen.set_state(state["gen"])
        # a resume may extend the budget and change settings; each (re)start is recorded to replay it
        cfg = with_settings({**state["cfg"], "minutes": args.minutes}, args.set)
        cfg["runs"] = [*denoiser_runs(state["cfg"]), {"from_step": step, "minutes": args.minutes, "settings": list(args.set)}]
        print(f"resuming the denoiser at step {step} ({elapsed / 60:.1f} of {cfg['minutes']} min)")
    with torch.no_grad():
        null_ids, null_attn = tokenize(tokenizer, [""])
        null_cond = encoder(input_ids=null_ids, attention_mask=null_attn).last_hidden_state
    cache = EncoderCache(encoder, tokenizer)
    budget, last_save = cfg["minutes"] * 60, elapsed
    extra = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}, "return_dict": False}
    bar = tqdm(desc="denoiser (x0 prediction)", initial=step)
    started_at = step
    while elapsed < budget:
        t0 = time.time()
        progress = elapsed / budget
        scenes, texts = sample_batch(rng, cfg["batch"], cfg["mix"])
        x0 = torch.from_numpy(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
        drop = torch.rand(len(texts), generator=gen) < cfg["cfg_dropout"]
        cond, attn = cache(["" if d else t for d, t in zip(drop.tolist(), texts)])
        noise = torch.randn(x0.shape, generator=gen)
        t = sample_timesteps(cfg, len(texts), gen)
        xt = noise_sched.add_noise(x0, noise, t)
        target = x0
        if progress >= cfg["guided_after"]:
            # Guidance-aware target: the conditional branch learns u + (s/w)(x0 - u), so CFG at the
            # evaluation's w samples like CFG at s (plain CFG at w=4.5 overshoots: too many objects).
            n = len(texts)
            with torch.no_grad():
                uncond = model(xt, encoder_hidden_states=null_cond.expand(n, -1, -1),
                               encoder_attention_mask=null_attn.expand(n, -1), timestep=t, **extra)[0]
            ratio = cfg["guided_effective"] / cfg["guided_for"]
            target = torch.where(drop[:, None, None, None], x0, uncond + ratio * (x0 - uncond))
        pred = model(xt, encoder_hidden_states=cond, encoder_attention_mask=attn, timestep=t, **extra)[0]
        loss = F.mse_loss(pred, target)
        lr = lr_at(cfg, step, progress)
        optimizer_step(opt, model.parameters(), loss, lr)
        ema_update(ema, model, step, cfg["ema"])
        step += 1
        elapsed += time.time() - t0
        bar.update()
        if step % 50 == 0:
            log.append({"step": step, "minutes": round(elapsed / 60, 2), "cpu_s": round(time.process_time()), "loss": round(loss.item(), 5), "lr": lr})
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.1e}")
            print(json.dumps(log[-1]), flush=True)
        if elapsed - last_save > CHECKPOINT_EVERY or elapsed >= budget:
            ckpt.save(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), rng=rng.bit_generator.state,
                      gen=gen.get_state(), step=step, elapsed=elapsed, log=log, cfg=cfg)
            last_save = elapsed
            export(args.work, args.work / "pipeline")
    if step == started_at and state is not None:  # a resume whose budget was already spent: still record the run
        ckpt.save(**{**state, "cfg": cfg})


def denoiser_runs(cfg: dict) -> list[dict]:
    """The denoiser's (re)starts in order: each one's budget and settings (one run if never resumed)."""
    return cfg.get("runs") or [{"from_step": 0, "minutes": cfg["minutes"], "settings": []}]  # before runs were kept


def export(work: Path, out: Path):
    """The diffusers layout (EMA denoiser) + training.json, swapped in whole."""
    state = torch.load(work / "denoiser.pt", weights_only=False)
    cfg = state["cfg"]
    encoder = T5EncoderModel.from_pretrained(work / "text_encoder")
    model = build_denoiser(cfg, encoder.config.d_model)
    model.load_state_dict(state["ema"])
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                prediction_type="sample", clip_sample=False)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ToyWorldPipeline(tokenizer=build_tokenizer(), text_encoder=encoder, transformer=model,
                     scheduler=DPMSolverMultistepScheduler.from_config(noise_sched.config)
                     ).save_pretrained(tmp, safe_serialization=True)
    enc = json.loads((work / "encoder.json").read_text())
    run = "python -m skrr.experiments.toyworld.train_v2"
    record = {"commands": [f"{run} encoder --work runs/toyworld_v2 --minutes {enc['config']['minutes']:g} "
                           f"--steps {enc['config']['steps']} --seed {enc['config']['seed']} --threads 1",
                           *(f"{run} denoiser --work runs/toyworld_v2 --minutes {r['minutes']:g} --seed {cfg['seed'] - 1} "
                             "--threads 1" + "".join(f" --set {k}" for k in r["settings"]) for r in denoiser_runs(cfg)),
                           f"{run} export --work runs/toyworld_v2 --out experiments/toyworld/weights_v2",
                           f"{run} evaluate --out experiments/toyworld/weights_v2"],
              "note": "each stage stops on its own training clock (wall time), so a rerun on another machine "
                      "reaches a similar, not an identical, model; a second denoiser command resumes the first "
                      "with a longer budget (its LR schedule follows the new budget from there)",
              "encoder": enc,
              "denoiser": {"config": cfg, "steps": state["step"], "minutes": state["elapsed"] / 60,
                           "last": state["log"][-1] if state["log"] else None}}
    (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def _half_widths(per_image: list[dict]) -> dict[str, float]:
    """Normal-approximation 95% half-widths of each task's accuracy and of their mean (the overall)."""
    tasks = sorted({r["tag"] for r in per_image})
    var = {t: np.var([bool(r["correct"]) for r in per_image if r["tag"] == t]) /
              sum(r["tag"] == t for r in per_image) for t in tasks}
    out = {t: round(1.96 * math.sqrt(v), 4) for t, v in var.items()}
    out["overall"] = round(1.96 * math.sqrt(sum(var.values())) / len(tasks), 4)
    return out


def evaluate(weights: Path, guidance_scale: float, threads: int, images_dir: Path) -> dict:
    """GenEval of the pipeline at `weights` on the full toy GenEval set, generated by skrr.eval.generate
    into `images_dir` (resumable; seed i for prompt i, the evaluation's 20 steps), next to the true
    scenes' score; both are added to its training.json."""
    from skrr.eval import generate as gen
    from skrr.eval.geneval.rules import summarize
    from skrr.eval.images import list_images, load_images
    from skrr.experiments.toyworld.captions import prompt_scenes
    from skrr.experiments.toyworld.metrics import geneval_results, geneval_scores

    pairs = prompt_scenes("geneval", **FULL_GENEVAL)
    metadata = [m for _, m in pairs]
    t0 = time.time()
    pipe = ToyWorldPipeline.from_pretrained(weights)
    sampler = gen.SamplerConfig(32, 32, 20, guidance_scale, FULL_GENEVAL["seed"], 64)
    gen.generate(pipe, [m["prompt"] for m in metadata], images_dir, sampler, rank=0, world_size=1)
    gen.merge(images_dir, len(metadata))
    per_image = geneval_results(load_images(list_images(images_dir)), metadata)
    result = {"prompts": FULL_GENEVAL, "guidance_scale": guidance_scale, "steps": 20, "torch_threads": threads,
              "dense": {k: round(v, 4) for k, v in summarize(per_image).items()},
              "dense_first_192": {k: round(v, 4) for k, v in summarize(per_image[:192]).items()},  # the demo's set
              "dense_half_width_95": _half_widths(per_image),
              "true_scenes": geneval_scores([render(s) for s, _ in pairs], metadata),
              "minutes": round((time.time() - t0) / 60, 2)}
    record = json.loads((weights / "training.json").read_text())
    record.setdefault("geneval_full", {})[f"cfg{guidance_scale:g}"] = result
    (weights / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["encoder", "denoiser", "export", "evaluate"])
    ap.add_argument("--work", type=Path, default=Path("runs/toyworld_v2"), help="checkpoints and the exported pipeline")
    ap.add_argument("--out", type=Path, default=None, help="export: the weights folder to write; evaluate: to score")
    ap.add_argument("--guidance-scale", type=float, default=4.5, help="evaluate: CFG scale (the evaluation's)")
    ap.add_argument("--minutes", type=float, default=10.0, help="the stage's training-time budget")
    ap.add_argument("--steps", type=int, default=100000, help="encoder: stop after this many steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="denoiser: change a DENOISER setting or a caption share (mix.position=0.3); recorded")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.stage == "evaluate":
        if args.out is None or not (args.out / "model_index.json").exists():
            raise SystemExit(f"evaluate needs --out <an exported pipeline>; got {args.out}")
        images_dir = args.work / f"geneval_full_cfg{args.guidance_scale:g}"
        return print(json.dumps(evaluate(args.out, args.guidance_scale, args.threads, images_dir), indent=2))
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "encoder":
        train_encoder(args)
    elif args.stage == "denoiser":
        if not (args.work / "text_encoder").exists():
            raise SystemExit(f"{args.work} has no trained text encoder; run the encoder stage first")
        train_denoiser(args)
    else:
        if not (args.work / "denoiser.pt").exists():
            raise SystemExit(f"{args.work} has no denoiser checkpoint; run the denoiser stage first")
        export(args.work, args.out or args.work / "pipeline")


if __name__ == "__main__":
    main()
