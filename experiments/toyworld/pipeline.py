"""ToyWorldPipeline: PixArt-Sigma's pipeline in pixel space (its VAE step is the identity).

Prompts are encoded by PixArtSigmaPipeline.encode_prompt unchanged (padding to max_length,
truncation, attention mask to encoder and transformer, "" as the CFG negative), and the
denoising loop is PixArt-Sigma's own; only the latent->image decode is dropped, because
the transformer works directly on 32x32 RGB in [-1, 1].
"""
from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, PixArtSigmaPipeline, PixArtTransformer2DModel
from diffusers.image_processor import PixArtImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import T5EncoderModel, T5TokenizerFast

from skrr.errors import InputError

MAX_LENGTH = 48  # tokens; the longest toy caption is 44 words + </s>


class ToyWorldPipeline(PixArtSigmaPipeline):
    model_cpu_offload_seq = "text_encoder->transformer"

    def __init__(self, tokenizer: T5TokenizerFast, text_encoder: T5EncoderModel,
                 transformer: PixArtTransformer2DModel, scheduler: KarrasDiffusionSchedulers):
        DiffusionPipeline.__init__(self)  # PixArtSigmaPipeline.__init__ insists on a VAE
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                              scheduler=scheduler)
        self.vae_scale_factor = 1
        self.image_processor = PixArtImageProcessor(vae_scale_factor=1)

    @torch.no_grad()
    def __call__(self, prompt=None, *, output_type: str = "pil", return_dict: bool = True,
                 clean_caption: bool = False, use_resolution_binning: bool = False,
                 max_sequence_length: int = MAX_LENGTH, **kwargs):
        """PixArtSigmaPipeline.__call__ with pixel-space output; same arguments.

        Defaults differ only where the toy world needs it: captions are already clean,
        there is no resolution binning table for 32x32, and captions fit in 48 tokens.
        """
        if use_resolution_binning:
            raise InputError("ToyWorldPipeline has no resolution bins; call it with use_resolution_binning=False")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise InputError(f"output_type must be pil, np, pt or latent, got {output_type!r}")
        pixels = super().__call__(prompt, output_type="latent", return_dict=False, clean_caption=clean_caption,
                                  use_resolution_binning=False, max_sequence_length=max_sequence_length,
                                  **kwargs)[0]
        images = pixels if output_type == "latent" else self.image_processor.postprocess(pixels, output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
