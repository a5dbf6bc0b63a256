"""Train the toy world's pipeline on CPU: T5 encoder -> (frozen) -> PixArt denoiser -> feature CNN.

    python -m skrr.experiments.toyworld.train --out experiments/toyworld/weights

Stage 1, text encoder: a T5EncoderModel trained with masked-word prediction on captions (a
linear head reads the final hidden states; the head is thrown away). It is the closest
encoder-only analogue of T5's own span-corruption objective: the encoder must carry every
word's identity *and* its context (which colour binds to which shape, which side a
relation points), which is exactly what the denoiser has to read, without us designing
the representation. Then frozen, as real pipelines freeze T5.
Stage 2, denoiser: diffusers' PixArtTransformer2DModel (patch 8, so one token per scene
cell) trained as an x0-predicting diffusion model (prediction_type "sample") on 32x32 RGB
pixels, reading the frozen
encoder's output through its own caption_projection, with 10% empty captions for CFG.
Stage 3, feature network: a small CNN trained to predict each cell's shape and colour from
toy images; its pooled features serve FID and DreamSim-style similarity in the toy world.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, PixArtTransformer2DModel
from tqdm import tqdm
from transformers import T5Config, T5EncoderModel

from skrr.experiments.toyworld.captions import PREFIXES, TRAIN_MIX, sample_example, sample_training_example
from skrr.experiments.toyworld.features import FeatureNet, cell_targets
from skrr.experiments.toyworld.pipeline import MAX_LENGTH, ToyWorldPipeline
from skrr.experiments.toyworld.scenes import render
from skrr.experiments.toyworld.tokenizer import MASK, build_tokenizer

DEFAULTS = dict(
    seed=0, threads=1,  # on 2 shared cores one thread ran 3-7x faster per step than two
    t5=dict(d_model=64, d_kv=16, num_heads=4, d_ff=256, num_layers=12, steps=1000, batch=64, lr=1e-3,
            mask_rate=0.25, unmasked_weight=0.2, minutes=5.0),
    denoiser=dict(num_layers=6, num_attention_heads=4, attention_head_dim=28, patch_size=8, steps=8000,
                  batch=64, lr=5e-4, warmup=300, ema=0.999, cfg_dropout=0.1, minutes=35.0,
                  prediction_type="sample"),
    features=dict(steps=600, batch=64, lr=2e-3),
)


def sample_from_mix(rng, mix):
    """sample_training_example with task weights `mix` (None: the captions module's TRAIN_MIX)."""
    if mix is None:
        return sample_training_example(rng)
    tasks = list(mix)
    task = tasks[int(rng.choice(len(tasks), p=np.array([mix[t] for t in tasks]) / sum(mix.values())))]
    return sample_example(task, rng, PREFIXES[int(rng.integers(len(PREFIXES)))])


def parse_mix(text):
    """'counting=0.25,position=0.2,...' -> TRAIN_MIX with those weights replaced."""
    mix = dict(TRAIN_MIX)
    for item in filter(None, text.split(",")):
        task, _, weight = item.partition("=")
        if task not in mix or not weight:
            raise SystemExit(f"bad --task-mix item {item!r}; use task=weight with task in {list(mix)}")
        mix[task] = float(weight)
    return mix


def batch_of_examples(rng, n, mix=None):
    scenes, texts = zip(*[sample_from_mix(rng, mix)[:2] for _ in range(n)])
    images = torch.from_numpy(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
    return list(scenes), list(texts), images


def tokenize(tokenizer, texts):
    # Padding to the batch's longest caption instead of MAX_LENGTH gives the same outputs on
    # real tokens (padding is masked everywhere) for a fraction of the compute.
    enc = tokenizer(texts, padding="longest", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def optimizer_step(opt, params, loss, lr: float) -> None:
    """One step at learning rate `lr`, gradients clipped to norm 1 (the stages differ in their
    schedules, not in the step)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


@torch.no_grad()
def ema_update(ema, model, step: int, ema_max: float) -> None:
    """The EMA copy moves towards `model` with decay min(ema_max, (1 + step) / (10 + step)): fast at first."""
    decay = min(ema_max, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - decay)


def train_text_encoder(cfg, tokenizer, rng, gen):
    config = T5Config(vocab_size=len(tokenizer), d_model=cfg["d_model"], d_kv=cfg["d_kv"], d_ff=cfg["d_ff"],
                      num_layers=cfg["num_layers"], num_heads=cfg["num_heads"], feed_forward_proj="gated-gelu",
                      dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False,
                      pad_token_id=0, eos_token_id=1)
    encoder = T5EncoderModel(config)
    head = torch.nn.Linear(cfg["d_model"], len(tokenizer))
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    mask_id = tokenizer.convert_tokens_to_ids(MASK)
    bar = tqdm(range(cfg["steps"]), desc="text encoder (masked words)")
    t0 = time.time()
    for step in bar:
        texts = [sample_training_example(rng)[1] for _ in range(cfg["batch"])]
        ids, attn = tokenize(tokenizer, texts)
        words = (attn == 1) & (ids != tokenizer.eos_token_id)
        masked = words & (torch.rand(ids.shape, generator=gen) < cfg["mask_rate"])
        logits = head(encoder(input_ids=ids.masked_fill(masked, mask_id), attention_mask=attn).last_hidden_state)
        loss_tok = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
        weight = masked.float() + cfg["unmasked_weight"] * (words & ~masked).float()
        loss = (loss_tok * weight).sum() / weight.sum()
        progress = max(step / cfg["steps"], (time.time() - t0) / (cfg["minutes"] * 60))  # ends on time
        lr = cfg["lr"] * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        optimizer_step(opt, params, loss, lr)
        if step % 50 == 0:
            acc = (logits.argmax(-1) == ids)[masked].float().mean().item()
            bar.set_postfix(loss=f"{loss.item():.3f}", masked_acc=f"{acc:.3f}")
        if progress >= 1:
            break
    encoder.eval().requires_grad_(False)
    return encoder, {"final_loss": loss.item(), "final_masked_acc": acc, "steps_done": step + 1}


def train_denoiser(cfg, encoder, tokenizer, rng, gen, save_fn, init=None):
    d = encoder.config.d_model
    transformer = init if init is not None else PixArtTransformer2DModel(
        num_attention_heads=cfg["num_attention_heads"], attention_head_dim=cfg["attention_head_dim"],
        in_channels=3, out_channels=3, num_layers=cfg["num_layers"],
        cross_attention_dim=cfg["num_attention_heads"] * cfg["attention_head_dim"], sample_size=32,
        patch_size=cfg["patch_size"], caption_channels=d, norm_type="ada_norm_single",
        use_additional_conditions=False, interpolation_scale=1)
    ema = PixArtTransformer2DModel.from_config(transformer.config)
    ema.load_state_dict(transformer.state_dict())
    ema.requires_grad_(False)
    # x0-prediction: a patch-8 token (112 dims) cannot carry a 192-pixel noise patch, so eps- or
    # v-prediction leaves visible noise at low noise levels; clean patches are easy to emit.
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                prediction_type=cfg["prediction_type"], clip_sample=False)
    opt = torch.optim.AdamW(transformer.parameters(), lr=cfg["lr"], weight_decay=0.0)
    guided = cfg.get("guided_for")
    if guided:  # guidance-aware targets need the unconditional branch's own prediction
        null_ids, null_attn = tokenize(tokenizer, [""])
        with torch.no_grad():
            null_cond = encoder(input_ids=null_ids, attention_mask=null_attn).last_hidden_state
    t0, stats = time.time(), {}
    bar = tqdm(range(cfg["steps"]), desc=f"denoiser ({cfg['prediction_type']} prediction)")
    for step in bar:
        _, texts, x0 = batch_of_examples(rng, cfg["batch"], cfg.get("task_mix"))
        drop = torch.rand(len(texts), generator=gen) < cfg["cfg_dropout"]
        ids, attn = tokenize(tokenizer, ["" if d else text for d, text in zip(drop.tolist(), texts)])
        with torch.no_grad():
            cond = encoder(input_ids=ids, attention_mask=attn).last_hidden_state
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(texts),), generator=gen)
        xt = noise_sched.add_noise(x0, noise, t)
        if cfg["prediction_type"] == "sample":
            target = x0
        elif cfg["prediction_type"] == "v_prediction":
            target = noise_sched.get_velocity(x0, noise, t)
        else:
            target = noise
        if guided:
            # Guidance-aware target (cf. guidance distillation): teach the conditional branch
            # u + (s/w)(E[target|x_t,c] - u), so CFG at scale w samples like CFG at scale s.
            # At w=4.5 the plain model over-extrapolates (too many objects); s=1.5 does not.
            n = len(texts)
            with torch.no_grad():
                uncond = transformer(xt, encoder_hidden_states=null_cond.expand(n, -1, -1),
                                     encoder_attention_mask=null_attn.expand(n, -1), timestep=t,
                                     added_cond_kwargs={"resolution": None, "aspect_ratio": None},
                                     return_dict=False)[0]
            ratio = cfg["guided_effective"] / guided
            target = torch.where(drop[:, None, None, None], target, uncond + ratio * (target - uncond))
        pred = transformer(xt, encoder_hidden_states=cond, encoder_attention_mask=attn, timestep=t,
                           added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]
        loss = F.mse_loss(pred, target)
        progress = max(step / cfg["steps"], (time.time() - t0) / (cfg["minutes"] * 60))  # ends on time
        lr = cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        optimizer_step(opt, transformer.parameters(), loss, lr)
        ema_update(ema, transformer, step, cfg["ema"])
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.1e}")
        stats = {"steps_done": step + 1, "final_loss": loss.item()}
        if (step + 1) % 1000 == 0:
            save_fn(ema, noise_sched, stats)
        if time.time() - t0 > cfg["minutes"] * 60:
            print(f"time budget of {cfg['minutes']} min reached at step {step + 1}")
            break
    stats["minutes"] = (time.time() - t0) / 60
    return ema, noise_sched, stats


def train_features(cfg, rng):
    net = FeatureNet()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"])
    bar = tqdm(range(cfg["steps"]), desc="feature CNN (cell shape/colour)")
    for step in bar:
        scenes, _, x = batch_of_examples(rng, cfg["batch"])
        x = (x + 0.15 * torch.randn_like(x) * torch.rand(len(x), 1, 1, 1)).clamp(-1, 1)  # robust to sampler noise
        shape_t, color_t = cell_targets(scenes)
        shape_logits, color_logits = net.cell_logits(x)
        loss = F.cross_entropy(shape_logits, shape_t) + F.cross_entropy(color_logits, color_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            acc = (shape_logits.argmax(1) == shape_t).float().mean().item()
            bar.set_postfix(loss=f"{loss.item():.3f}", shape_acc=f"{acc:.3f}")
    return net.eval(), {"final_loss": loss.item()}


def save_pipeline(out: Path, tokenizer, encoder, transformer, noise_sched, record):
    """Write the diffusers layout to a temp folder, then swap it in (never a half-written folder)."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sampler = DPMSolverMultistepScheduler.from_config(noise_sched.config)
    ToyWorldPipeline(tokenizer=tokenizer, text_encoder=encoder, transformer=transformer,
                     scheduler=sampler).save_pretrained(tmp, safe_serialization=True)
    if (out / "features").exists():
        shutil.copytree(out / "features", tmp / "features")
    (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("experiments/toyworld/weights"))
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--threads", type=int, default=DEFAULTS["threads"])
    ap.add_argument("--denoiser-minutes", type=float, default=DEFAULTS["denoiser"]["minutes"])
    ap.add_argument("--denoiser-steps", type=int, default=DEFAULTS["denoiser"]["steps"])
    ap.add_argument("--only", choices=["all", "denoiser", "features"], default="all",
                    help="'denoiser': a fresh denoiser (then features) on the text encoder already in --out; "
                         "'features': only the feature CNN")
    ap.add_argument("--task-mix", default="",
                    help="denoiser caption mix overrides, e.g. 'counting=0.25,position=0.2' (default: TRAIN_MIX)")
    ap.add_argument("--lr-scale", type=float, default=0.6,
                    help="--resume only: peak LR as a fraction of the denoiser's base LR")
    ap.add_argument("--guided-for", type=float, default=0.0,
                    help="train the conditional branch for CFG at this scale (0: plain training) ...")
    ap.add_argument("--guided-effective", type=float, default=1.5,
                    help="... so that it samples like plain CFG at this scale")
    ap.add_argument("--resume", action="store_true",
                    help="continue training the denoiser in --out for --denoiser-minutes more (fresh data seed)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = json.loads(json.dumps(DEFAULTS))
    cfg.update(seed=args.seed, threads=args.threads)
    cfg["denoiser"].update(minutes=args.denoiser_minutes, steps=args.denoiser_steps)
    if args.task_mix:
        cfg["denoiser"]["task_mix"] = parse_mix(args.task_mix)
    if args.guided_for:
        cfg["denoiser"].update(guided_for=args.guided_for, guided_effective=args.guided_effective)

    if args.only == "features":
        if not (args.out / "model_index.json").exists():
            raise SystemExit(f"{args.out} has no trained pipeline; run without --only first")
        t0 = time.time()
        net, stats = train_features(cfg["features"], np.random.default_rng(args.seed + 2))
        tmp = args.out / "features.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        net.save_pretrained(tmp)
        shutil.rmtree(args.out / "features", ignore_errors=True)
        os.replace(tmp, args.out / "features")
        record = json.loads((args.out / "training.json").read_text())
        record["features"] = {**stats, "minutes": (time.time() - t0) / 60, "data_seed": args.seed + 2}
        (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        return

    if args.resume:
        return resume_denoiser(args, cfg, gen)
    if args.only == "denoiser":
        return fresh_denoiser(args, cfg, gen)

    tokenizer = build_tokenizer()
    record = {"config": cfg, "data_seeds": {"text_encoder": args.seed, "denoiser": args.seed + 1,
                                            "features": args.seed + 2},
              "torch_threads": args.threads, "max_length": MAX_LENGTH}
    t0 = time.time()
    encoder, record["text_encoder"] = train_text_encoder(cfg["t5"], tokenizer, np.random.default_rng(args.seed), gen)
    record["text_encoder"]["minutes"] = (time.time() - t0) / 60

    def save(transformer, noise_sched, stats):
        save_pipeline(args.out, tokenizer, encoder, transformer, noise_sched, {**record, "denoiser": stats})

    transformer, noise_sched, record["denoiser"] = train_denoiser(
        cfg["denoiser"], encoder, tokenizer, np.random.default_rng(args.seed + 1), gen, save)
    save(transformer, noise_sched, record["denoiser"])
    main(["--out", str(args.out), "--seed", str(args.seed), "--threads", str(args.threads), "--only", "features"])


def fresh_denoiser(args, cfg, gen):
    """Stage 2 (+3) only, reading the stage-1 text encoder and its record from --out."""
    if not (args.out / "model_index.json").exists():
        raise SystemExit(f"{args.out} has no trained text encoder; run without --only first")
    pipe = ToyWorldPipeline.from_pretrained(args.out)
    record = json.loads((args.out / "training.json").read_text())
    record["config"]["denoiser"] = cfg["denoiser"]
    record.pop("denoiser_resumes", None)
    encoder = pipe.text_encoder.eval().requires_grad_(False)

    def save(transformer, noise_sched, stats):
        save_pipeline(args.out, pipe.tokenizer, encoder, transformer, noise_sched, {**record, "denoiser": stats})

    transformer, noise_sched, stats = train_denoiser(cfg["denoiser"], encoder, pipe.tokenizer,
                                                     np.random.default_rng(args.seed + 1), gen, save)
    save(transformer, noise_sched, stats)
    main(["--out", str(args.out), "--seed", str(args.seed), "--threads", str(args.threads), "--only", "features"])


def resume_denoiser(args, cfg, gen):
    """More denoiser training from the shipped (EMA) weights; the frozen encoder is untouched."""
    if not (args.out / "model_index.json").exists():
        raise SystemExit(f"{args.out} has no trained pipeline to resume; run without --resume first")
    pipe = ToyWorldPipeline.from_pretrained(args.out)
    record = json.loads((args.out / "training.json").read_text())
    resumes = record.setdefault("denoiser_resumes", [])
    data_seed = args.seed + 10 + len(resumes)
    run_cfg = {**cfg["denoiser"], "warmup": 50, "lr": args.lr_scale * cfg["denoiser"]["lr"]}  # gentler restart
    encoder = pipe.text_encoder.eval().requires_grad_(False)
    transformer = pipe.transformer.train().requires_grad_(True)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)

    def save(model, sched, stats):
        save_pipeline(args.out, pipe.tokenizer, encoder, model, sched,
                      {**record, "denoiser_resumes": resumes + [{**stats, "data_seed": data_seed, "config": run_cfg}]})

    transformer, noise_sched, stats = train_denoiser(run_cfg, encoder, pipe.tokenizer, np.random.default_rng(data_seed),
                                                     gen, save, init=transformer)
    save(transformer, noise_sched, stats)


if __name__ == "__main__":
    main()
