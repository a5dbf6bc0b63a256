"""Offline twins of the real pipelines: same diffusers/transformers classes, tiny configs,
random weights (fixed seed) and a tokenizer trained in-process. Built once, saved with
`save_pretrained`, and from then on loaded with `from_pretrained` like the real models."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import torch

from skrr.atomic import atomic_path

# A small caption corpus so the tokenizer knows ordinary words (prompts tokenize into several
# real pieces, and padding lengths differ between prompts, as with the real tokenizer).
_WORDS = ("a an the of on in with and at by near under over photo painting picture image of red green blue "
          "yellow black white orange purple pink brown gray cat dog bird car bus train boat horse person man "
          "woman child apple banana pizza cake clock chair table bed cup bottle tree flower house city street "
          "river mountain beach sky sun moon snow rain night day small large tall old young happy sitting "
          "standing running flying floating made glass wooden metal two three four many left right above below "
          "next to front behind detailed colorful realistic cartoon style art game island space corgi yosemite "
          "national park artist studio canvas gears intricate frozen time").split()


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(_WORDS[int(i)] for i in torch.randint(len(_WORDS), (int(torch.randint(3, 20, (1,), generator=g)),),
                                                            generator=g)) for _ in range(n)]


def t5_tokenizer(max_length: int = 512):
    """A Unigram tokenizer with T5's special tokens and `</s>` appended, as `T5TokenizerFast`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace()
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           model_max_length=max_length, extra_ids=0)


def clip_tokenizer():
    """A byte-level BPE tokenizer with CLIP's special tokens, as `CLIPTokenizerFast` (77 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import CLIPTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                       special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    tok.decoder = decoders.ByteLevel()
    return CLIPTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=77)


def tiny_t5(d_model: int = 32, num_layers: int = 6, vocab_size: int = 300):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=48, num_layers=num_layers,
                                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                                   feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))


def _tiny_clip(cls, hidden: int = 32, vocab_size: int = 400):
    from transformers import CLIPTextConfig

    return cls(CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37, num_hidden_layers=3,
                              num_attention_heads=4, max_position_embeddings=77, projection_dim=hidden,
                              hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1))


def _build_pixart():
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4, sample_size=16)
    return PixArtSigmaPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(32), vae=vae, transformer=transformer,
                               scheduler=DPMSolverMultistepScheduler())


def _build_sd3():
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    transformer = SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
                                        pooled_projection_dim=64, out_channels=4)
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4, sample_size=16,
                        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return StableDiffusion3Pipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_tiny_clip(CLIPTextModelWithProjection), tokenizer=clip_tokenizer(),
        text_encoder_2=_tiny_clip(CLIPTextModelWithProjection), tokenizer_2=clip_tokenizer(),
        text_encoder_3=tiny_t5(64), tokenizer_3=t5_tokenizer())


def _build_flux():
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    vae = AutoencoderKL(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    return FluxPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                        text_encoder=_tiny_clip(CLIPTextModel), tokenizer=clip_tokenizer(),
                        text_encoder_2=tiny_t5(32), tokenizer_2=t5_tokenizer())


BUILDERS = {"tiny_pixart": _build_pixart, "tiny_sd3": _build_sd3, "tiny_flux": _build_flux}


def cache_root() -> Path:
    return Path(os.environ.get("SKRR_CACHE", Path.home() / ".cache" / "skrr"))


def tiny_pipeline_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Directory of the saved tiny pipeline `name`, built on first use (seeded, so identical everywhere)."""
    if name not in BUILDERS:
        raise KeyError(f"unknown tiny model {name!r}; choose from {sorted(BUILDERS)}")
    target = Path(root or cache_root() / "tiny") / name
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent first uses (xdist workers, torchrun ranks) build once
        if (target / "model_index.json").is_file():
            return target
        with torch.random.fork_rng():
            torch.manual_seed(0)
            pipe = BUILDERS[name]()
        with atomic_path(target, directory=True) as tmp:  # also clears a killed process's half-built leftover
            pipe.save_pretrained(tmp)
    return target
