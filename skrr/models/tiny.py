"""Offline twins of the real pipelines: same diffusers/transformers classes, tiny configs,
random weights (fixed seed) and a tokenizer trained in-process. Built once, saved with
`save_pretrained`, and from then on loaded with `from_pretrained` like the real models. A model
config reaches them through its pipeline adapter, `{_target_: skrr.models.tiny.TinyPipeline, twin: ...}`:
the model registry itself knows nothing of them. Like the builders' libraries, torch is imported when a
twin or its corpus is made, not when a config naming `TinyPipeline` is checked."""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from skrr.errors import ConfigError, UnknownName
from skrr.hub.atomic import atomic_path
from skrr.models import PipelineSource

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
    import torch

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
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)  # its bar leaves blank lines on a command's stdout
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
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
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
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
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


def _bpe(corpus: list[str], vocab_size: int, special: list[str], normalizer, pre_tokenizer, alphabet) -> tuple[dict, list]:
    """vocab and merges of a BPE trained in process (for the tokenizer classes that take them)."""
    import json

    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                                                initial_alphabet=alphabet, show_progress=False))
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def gemma_tokenizer(instructions: str = ""):
    """Gemma's tokenizer (`GemmaTokenizer`: SentencePiece-style BPE, `<bos>` prepended) on a tiny
    vocabulary; `instructions` (a pipeline's fixed preamble) are learned too, so they take a few
    hundred tokens as with the real vocabulary rather than one per character."""
    import string

    from tokenizers import normalizers, pre_tokenizers
    from transformers import GemmaTokenizer

    vocab, merges = _bpe(_corpus() + [instructions] * 20, 800, ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
                         normalizers.Replace(" ", "\u2581"),
                         pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False),
                         list(string.printable.replace(" ", "\u2581")))
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)


def qwen2_tokenizer(template_words: str = ""):
    """Qwen2's byte-level BPE (`Qwen2Tokenizer`) on a tiny vocabulary with the chat special tokens.
    Words of `template_words` are learned whole, so a chat template tokenizes as the real one does."""
    from tokenizers import normalizers, pre_tokenizers
    from transformers import Qwen2Tokenizer

    corpus = _corpus() + [template_words] * 50
    vocab, merges = _bpe(corpus, 600, ["<|endoftext|>"], normalizers.NFC(),
                         pre_tokenizers.ByteLevel(add_prefix_space=False), pre_tokenizers.ByteLevel.alphabet())
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


def tiny_gemma2(hidden: int = 32, num_layers: int = 4, vocab_size: int = 800):
    from transformers import Gemma2Config, Gemma2Model

    # a 16-token sliding window, so the alternating sliding/full masks differ on prompts
    return Gemma2Model(Gemma2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=48,
                                    num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                                    head_dim=8, query_pre_attn_scalar=8, sliding_window=16, pad_token_id=0,
                                    eos_token_id=1, bos_token_id=2))


def _build_sana():
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel

    transformer = SanaTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=4,
                                         num_layers=1, num_cross_attention_heads=2, cross_attention_head_dim=4,
                                         cross_attention_dim=8, caption_channels=32, sample_size=8, patch_size=1)
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock", "EfficientViTBlock"),
                        decoder_block_types=("ResBlock", "EfficientViTBlock"),
                        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
                        encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
                        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41)
    from inspect import signature

    instruction = "\n".join(signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default)
    return SanaPipeline(tokenizer=gemma_tokenizer(instruction), text_encoder=tiny_gemma2(), vae=vae, transformer=transformer,
                        scheduler=DPMSolverMultistepScheduler())


def _build_lumina2():
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    transformer = Lumina2Transformer2DModel(sample_size=4, patch_size=2, in_channels=4, hidden_size=16, num_layers=1,
                                            num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1,
                                            multiple_of=16, axes_dim_rope=(2, 2, 4), axes_lens=(300, 32, 32),
                                            cap_feat_dim=32)
    # four blocks: Lumina 2 assumes the VAE downsamples by 8
    vae = AutoencoderKL(block_out_channels=(4, 4, 4, 4), layers_per_block=1, norm_num_groups=2, latent_channels=4,
                        sample_size=32, shift_factor=0.1159, scaling_factor=0.3611,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    return Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                           text_encoder=tiny_gemma2(),
                           tokenizer=gemma_tokenizer(Lumina2Pipeline(None, None, None, None, None).system_prompt))


def _build_qwen_image():
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    template = _qwen_image_template()
    tokenizer = qwen2_tokenizer(template)
    text_config = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, bos_token_id=None,
                       eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id,
                       rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e6})
    vision_config = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32, patch_size=2,
                         temporal_patch_size=1, spatial_merge_size=1, window_size=4, fullatt_block_indexes=[0])
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id))
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=1,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                              axes_dims_rope=(2, 2, 4))
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1,
                                 temperal_downsample=[False], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    return QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                             tokenizer=tokenizer, transformer=transformer)


def _qwen_image_template() -> str:
    """The chat template QwenImagePipeline wraps prompts in (read from the pinned diffusers)."""
    from diffusers import QwenImagePipeline

    return QwenImagePipeline(None, None, None, None, None).prompt_template_encode


# Mistral-Small-3.x's chat layout (system prompt, then the user's turn), content as FLUX.2 passes it:
# a list of {"type": "text"} parts. The real template adds tool and image handling no T2I call uses.
MISTRAL3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% set text = message['content'] if message['content'] is string "
    "else message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]{% else %}{{ text }}{{ eos_token }}{% endif %}"
    "{% endfor %}")


def mistral3_processor(instructions: str = ""):
    """FLUX.2's tokenizer component: a `PixtralProcessor` (image processor + a byte-level BPE with
    Mistral's special tokens and chat layout) on a tiny vocabulary; `instructions` (the pipeline's
    system message) are learned whole, so they take few tokens as with the real vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PixtralImageProcessor, PixtralProcessor, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]",
               "[IMG_BREAK]", "[IMG_END]"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = normalizers.NFC(), pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus() + [instructions] * 50, trainer=trainers.BpeTrainer(
        vocab_size=700, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", chat_template=MISTRAL3_CHAT_TEMPLATE)
    image_processor = PixtralImageProcessor(size={"longest_edge": 32}, patch_size=4)
    return PixtralProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                            chat_template=MISTRAL3_CHAT_TEMPLATE)


def tiny_mistral3(tokenizer, num_layers: int = 40, hidden: int = 16):
    """Mistral3ForConditionalGeneration as FLUX.2-dev's (a Mistral language tower of 40 layers, so
    the pipeline's own hidden states 10, 20, 30 exist; a Pixtral vision tower; an untied LM head), tiny."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (("bos_token_id", "<s>"), ("eos_token_id", "</s>"),
                                                                ("pad_token_id", "<pad>"))}
    text = dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=24,
                num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, head_dim=4,
                max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=1e9, sliding_window=None,
                tie_word_embeddings=False, **ids)
    vision = dict(model_type="pixtral", hidden_size=16, num_hidden_layers=1, num_attention_heads=4, head_dim=4,
                  intermediate_size=24, image_size=32, patch_size=4, num_channels=3)
    return Mistral3ForConditionalGeneration(Mistral3Config(
        text_config=text, vision_config=vision, image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=1, vision_feature_layer=-1, tie_word_embeddings=False, **ids))


def _build_flux2():
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

    processor = mistral3_processor(SYSTEM_MESSAGE)
    text_encoder = tiny_mistral3(processor.tokenizer)
    # joint_attention_dim: the three stacked hidden states of the encoder, side by side
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=3 * 16,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4])
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                             up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1,
                             latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False)
    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                         tokenizer=processor, transformer=transformer)


# Qwen3's chat layout for a user turn and the generation prompt; `enable_thinking=False` adds the
# empty think block, as the real template does (tools and multi-turn handling omitted).
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
    "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def qwen3_tokenizer():
    """Qwen3's tokenizer (Qwen2's byte-level BPE with the chat and think tokens) with its chat template."""
    tok = qwen2_tokenizer("user assistant")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]})
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    return tok


def tiny_qwen3(cls_name: str, tokenizer, num_layers: int, hidden: int = 16):
    import transformers

    config = transformers.Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=24,
                                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                                      head_dim=4, max_position_embeddings=512, tie_word_embeddings=True,
                                      pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return getattr(transformers, cls_name)(config)


def _build_z_image():
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    tokenizer = qwen3_tokenizer()
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=1,
                                           n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
                                           axes_dims=[4, 6, 6], axes_lens=[64, 32, 32])
    vae = AutoencoderKL(block_out_channels=(4,), norm_num_groups=2, latent_channels=4, sample_size=32,
                        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, tokenizer=tokenizer,
                          text_encoder=tiny_qwen3("Qwen3Model", tokenizer, num_layers=4), transformer=transformer)


def _build_flux2_klein():
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    tokenizer = qwen3_tokenizer()
    # 28 layers, so the pipeline's own hidden states 9, 18, 27 exist
    text_encoder = tiny_qwen3("Qwen3ForCausalLM", tokenizer, num_layers=28)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=3 * 16,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
                                          guidance_embeds=False)
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                             up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1,
                             latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False)
    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, transformer=transformer)


def _build_chroma():
    from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=[4, 4, 8], approximator_num_channels=8,
                                           approximator_hidden_dim=16, approximator_layers=1)
    vae = AutoencoderKL(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=tiny_t5(32),
                          tokenizer=t5_tokenizer(), transformer=transformer)


def llama_tokenizer():
    """Llama-3's tokenizer form (`PreTrainedTokenizerFast`: byte-level BPE, `<|begin_of_text|>`
    prepended, a pad token as HiDream's pipeline needs) on a tiny vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=500, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   pad_token="<|pad|>", model_max_length=128)


def _build_hidream():
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        HiDreamImagePipeline,
        HiDreamImageTransformer2DModel,
    )
    from transformers import CLIPTextModelWithProjection, LlamaConfig, LlamaForCausalLM

    tokenizer_4 = llama_tokenizer()
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer_4), hidden_size=16, intermediate_size=24,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         pad_token_id=tokenizer_4.pad_token_id, bos_token_id=0, eos_token_id=1))
    # three blocks: as the real model, every Llama layer in order, then the last again (llama_layers)
    transformer = HiDreamImageTransformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                                 num_single_layers=2, attention_head_dim=8, num_attention_heads=4,
                                                 caption_channels=[32, 16], text_emb_dim=64, num_routed_experts=4,
                                                 num_activated_experts=2, axes_dims_rope=(4, 2, 2),
                                                 max_resolution=(32, 32), llama_layers=(0, 1, 1))
    vae = AutoencoderKL(block_out_channels=(4,), norm_num_groups=2, latent_channels=4, sample_size=32,
                        scaling_factor=0.3611, shift_factor=0.1159)
    return HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, transformer=transformer,
        text_encoder=_tiny_clip(CLIPTextModelWithProjection), tokenizer=clip_tokenizer(),
        text_encoder_2=_tiny_clip(CLIPTextModelWithProjection), tokenizer_2=clip_tokenizer(),
        text_encoder_3=tiny_t5(32), tokenizer_3=t5_tokenizer(), text_encoder_4=llama, tokenizer_4=tokenizer_4)


def tiny_umt5(d_model: int = 32, num_layers: int = 4, vocab_size: int = 300):
    """umT5 (Wan's encoder: T5 whose every layer has its own relative position bias), tiny."""
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=48, num_layers=num_layers,
                                       num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                                       feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                                       decoder_start_token_id=0))


def _build_wan():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    # the VAE downsamples 8x in space and 4x in time, like the real one: 16x16 pixels, 5 frames = 2x2x2 latents
    vae = AutoencoderKLWan(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                                        out_channels=4, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=1,
                                        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    return WanPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_umt5(32), vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


def tiny_gemma3(tokenizer, num_layers: int = 4, hidden: int = 16):
    """Gemma3ForConditionalGeneration as LTX-2's (a Gemma-3 language tower alternating sliding and global
    layers, a SigLIP vision tower, an LM head tied to the embeddings), tiny."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    # a wide MLP, so the layers outweigh the embeddings as at real size (every sparsity target is reachable)
    text = dict(model_type="gemma3_text", vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=96,
                num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, head_dim=4,
                query_pre_attn_scalar=4, sliding_window=8, sliding_window_pattern=2, max_position_embeddings=512,
                rope_scaling={"rope_type": "linear", "factor": 8.0}, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                  num_attention_heads=2, image_size=16, patch_size=4, vision_use_head=False)
    return Gemma3ForConditionalGeneration(Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                                       image_token_index=tokenizer.unk_token_id))


def _build_ltx2():
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    tokenizer = gemma_tokenizer()
    text_encoder = tiny_gemma3(tokenizer)
    width, states = text_encoder.config.text_config.hidden_size, text_encoder.config.text_config.num_hidden_layers + 1
    # learnable registers replace the padding, as in the real connectors (4 here: max_length must be a multiple);
    # the connectors' width is the encoder's (heads x head dim), as the real 30 x 128 = 3840
    connectors = LTX2TextConnectors(caption_channels=width, text_proj_in_factor=states, video_connector_num_attention_heads=4,
                                    video_connector_attention_head_dim=width // 4, video_connector_num_layers=1,
                                    video_connector_num_learnable_registers=4, audio_connector_num_attention_heads=4,
                                    audio_connector_attention_head_dim=width // 4, audio_connector_num_layers=1,
                                    audio_connector_num_learnable_registers=4, connector_rope_base_seq_len=32,
                                    rope_double_precision=False, rope_type="split")
    transformer = LTX2VideoTransformer3DModel(in_channels=4, out_channels=4, patch_size=1, patch_size_t=1,
                                              num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                                              audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
                                              audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=1,
                                              qk_norm="rms_norm_across_heads", caption_channels=width,
                                              rope_double_precision=False, rope_type="split")
    vae = AutoencoderKLLTX2Video(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                                 decoder_block_out_channels=(8,), layers_per_block=(1,), decoder_layers_per_block=(1, 1),
                                 spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,),
                                 decoder_inject_noise=(False, False), downsample_type=("spatial",),
                                 upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False,
                                 patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    audio_vae = AutoencoderKLLTX2Audio(base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1,
                                       attn_resolutions=None, in_channels=2, resolution=32, latent_channels=2,
                                       norm_type="pixel", causality_axis="height", dropout=0.0,
                                       mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160,
                                       is_causal=True, mel_bins=8)
    vocoder = LTX2Vocoder(in_channels=2 * 8, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
                          upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                          leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    return LTX2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae, text_encoder=text_encoder,
                        tokenizer=tokenizer, connectors=connectors, transformer=transformer, vocoder=vocoder)


BUILDERS = {"tiny_hidream_i1": _build_hidream, "tiny_flux2": _build_flux2, "tiny_flux2_klein": _build_flux2_klein, "tiny_z_image": _build_z_image,
            "tiny_chroma": _build_chroma, "tiny_pixart": _build_pixart, "tiny_sd3": _build_sd3, "tiny_flux": _build_flux, "tiny_sana": _build_sana,
            "tiny_lumina2": _build_lumina2, "tiny_qwen_image": _build_qwen_image,
            "tiny_wan": _build_wan, "tiny_ltx2": _build_ltx2}


def cache_root() -> Path:
    return Path(os.environ.get("SKRR_CACHE", Path.home() / ".cache" / "skrr"))


def tiny_pipeline_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Directory of the saved tiny pipeline `name`, built on first use (seeded, so identical everywhere)."""
    if name not in BUILDERS:
        raise UnknownName(f"unknown tiny model {name!r}; choose from {sorted(BUILDERS)}")
    target = Path(root or cache_root() / "tiny") / name
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent first uses (xdist workers, torchrun ranks) build once
        if (target / "model_index.json").is_file():
            return target
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(0)
            pipe = BUILDERS[name]()
        with atomic_path(target, directory=True) as tmp:  # also clears a killed process's half-built leftover
            pipe.save_pretrained(tmp)
    return target


@dataclass(frozen=True)
class TinyPipeline(PipelineSource):
    """A model's pipeline adapter for its tiny twin: `pipeline_class` (the real model's) read from
    the twin's folder under $SKRR_CACHE/tiny, built on first use by `BUILDERS[twin]`."""
    pipeline_class: str
    twin: str

    def __post_init__(self):
        if self.twin not in BUILDERS:
            raise ConfigError("twin", f"names no tiny twin ({self.twin!r}); choose from {sorted(BUILDERS)}")

    def check(self, model) -> None:
        if model.pretrained is not None:  # never read: refuse rather than ignore it
            raise ConfigError("pretrained", f"is not read by the tiny twin {self.twin} (random weights, built "
                                            "offline); to read a saved copy, use skrr.models.read_from(model, folder)")

    def folder(self, model) -> str:
        return str(tiny_pipeline_dir(self.twin))

    def provenance(self, model) -> str:
        return f"tiny twin of {model.name} (random weights, built offline)"
