"""Efficiency of a text-to-image pipeline: parameters, memory, TFLOPs of one generation, encoder share.

A report of the pipeline a plan gives, not a metric of images, so it lives beside the other reports.
It still plugs in as `metrics.efficiency` (`conf/metrics/efficiency/flops.yaml`, `eval.metrics=[...,
efficiency]`) and fills the row's `metrics.efficiency`, through the part of eval.metrics.Metric's
contract the runner reads (prompt_set None, needs_pipeline, needs_dense, validate, compute).

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on one real call of each part (the
encoder fed at the model's token length, as image generation feeds it): text encoder once, denoiser
once (x steps x 2 with CFG, as the sampler calls it on a doubled batch), VAE decode once. Memory: the resident parameter and buffer bytes (the runner's result row also
records the process's peak CUDA memory). Per text encoder, its parameters against the encoder as its
checkpoint holds it (`shipped_params`): below 1 for a pruned one, and for a dense one whose pipeline
never reads its tail (FLUX.2, Z-Image), which the pipeline loads without it.
"""
from __future__ import annotations

import inspect

import torch
from torch.utils.flop_counter import FlopCounterMode

from skrr.encoders.quantize import stored_bytes
from skrr.encoders.view import count_params, shipped_params
from skrr.eval.generate import call_options


def resident_bytes(module: torch.nn.Module) -> int:
    """Real stored weight bytes: quantized weights count their int data and scales, not the dtype they stand for."""
    return stored_bytes(module)


def pipeline_modules(pipe) -> dict[str, torch.nn.Module]:
    return {name: comp for name, comp in pipe.components.items() if isinstance(comp, torch.nn.Module)}


def text_encoders(pipe) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in pipeline_modules(pipe).items() if n.startswith("text_encoder")}


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def generation_flops(pipe, prompt: str = "a photo of a cat", height: int = 512, width: int = 512,
                     num_inference_steps: int = 20, guidance_scale: float | None = None) -> dict[str, float]:
    """FLOPs of one real generation, booked to encoder / denoiser / VAE decode by forward hooks.

    The counter runs over the whole pipe(...) call, so the denoiser's share is steps x its batch
    (doubled under CFG) exactly as the sampler runs it; FLOPs outside the three parts go to 'other'."""
    denoiser = pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet
    counter = FlopCounterMode(display=False)
    totals = {"encoder": 0, "denoiser": 0, "vae": 0, "other": 0}
    state = {"part": None, "booked": 0}

    def book():  # FLOPs since the last part boundary belong to the part that was running
        total = counter.get_total_flops()
        totals[state["part"] or "other"] += total - state["booked"]
        state["booked"] = total

    def enter(name):
        def hook(module, args, kwargs):
            book()
            state["part"] = name
        return hook

    def leave(module, args, kwargs, output):
        book()
        state["part"] = None

    handles = []
    for enc in text_encoders(pipe).values():
        handles += [enc.register_forward_pre_hook(enter("encoder"), with_kwargs=True),
                    enc.register_forward_hook(leave, with_kwargs=True)]
    handles += [denoiser.register_forward_pre_hook(enter("denoiser"), with_kwargs=True),
                denoiser.register_forward_hook(leave, with_kwargs=True)]
    vae = getattr(pipe, "vae", None)  # pixel-space pipelines (the toy world) have none
    original_decode = vae.decode if vae is not None else None

    def decode(*args, **kwargs):  # decode is not forward, so hooks miss it
        book()
        state["part"] = "vae"
        try:
            return original_decode(*args, **kwargs)
        finally:
            book()
            state["part"] = None

    kwargs = dict(prompt=[prompt], num_inference_steps=num_inference_steps, height=height, width=width,
                  output_type="pil", generator=[torch.Generator().manual_seed(0)])
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    kwargs.update(call_options(pipe))
    length = getattr(pipe, "text_max_length", None)  # the model's token length, as image generation feeds it
    if length is not None and "max_sequence_length" in inspect.signature(pipe.__call__).parameters:
        kwargs["max_sequence_length"] = int(length)
    if vae is not None:
        vae.decode = decode
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    try:
        with counter, torch.no_grad():
            pipe(**kwargs)
        book()
    finally:
        for h in handles:
            h.remove()
        if vae is not None:
            del vae.decode
    total = sum(totals.values())
    return {"encoder_flops": totals["encoder"], "denoiser_flops": totals["denoiser"], "vae_flops": totals["vae"],
            "other_flops": totals["other"], "total_flops": total, "tflops": total / 1e12,
            "encoder_flop_share": totals["encoder"] / total if total else 0.0}


def efficiency_report(pipe, height: int = 512, width: int = 512, num_inference_steps: int = 20,
                      guidance_scale: float | None = None, prompt: str = "a photo of a cat") -> dict:
    modules = pipeline_modules(pipe)
    encoders = text_encoders(pipe)
    encoder_params = sum(count_params(m) for m in encoders.values())
    total_params = sum(count_params(m) for m in modules.values())
    report = {"encoder_params": encoder_params, "pipeline_params": total_params,
              "encoder_param_share": encoder_params / total_params if total_params else 0.0,
              "encoder_bytes": sum(resident_bytes(m) for m in encoders.values()),
              "pipeline_bytes": sum(resident_bytes(m) for m in modules.values()),
              # each encoder against itself as shipped (a plan's removals, an unread tail, unused heads)
              "text_encoders": {n: {"params": count_params(m), "shipped_params": shipped_params(m),
                                    "bytes": resident_bytes(m)} for n, m in encoders.items()}}
    report.update(generation_flops(pipe, prompt, height, width, num_inference_steps, guidance_scale))
    return report


class Efficiency:
    """Measures the pipeline it is built with (params, bytes, FLOPs of one generation, shares) on
    `prompt`. Not a torchmetrics.Metric: it reads no images and accumulates nothing, so it has no
    state to declare, reduce or sync; one call of compute() measures the pipeline once."""
    prompt_set = None
    needs_pipeline = True

    def __init__(self, pipeline, height: int = 512, width: int = 512, num_inference_steps: int = 20,
                 guidance_scale: float | None = None, prompt: str = "a photo of a cat"):
        self.pipeline, self.prompt = pipeline, prompt
        self.settings = dict(height=height, width=width, num_inference_steps=num_inference_steps,
                             guidance_scale=guidance_scale)

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return False

    @classmethod
    def validate(cls, cfg) -> None:
        """Nothing beyond its keys (checked against the constructor by eval.metrics.check_metric)."""

    def compute(self) -> dict:
        return efficiency_report(self.pipeline, prompt=self.prompt, **self.settings)
