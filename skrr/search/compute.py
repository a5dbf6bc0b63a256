"""The forward pass the search scores (prepare -> sub-blocks -> finish -> projection), the dtype it
computes in, and how far two correct computations of D may differ in that dtype.

The search computes in float32 by default, whatever the weights are stored in: D's differences
between candidates can fall below bf16's resolution, and a plan is a decision made once.

A CPU without native bf16 runs a bf16 matmul several times slower than fp32 (this project's
2-core machine: 5.6x on a 4096x4096 Linear over 512 rows). There the search computes in fp32
without an fp32 copy of the encoder (T5-XXL would need 19 GB): weights stay as stored, and each
sub-block runs with fp32 copies of its own weights, made for the call and dropped after it.
"""
from __future__ import annotations

import contextlib
import functools
import time

import torch
from torch import nn

from skrr.config.choices import CERTIFIED as CERTIFIED  # bf16 scores, close calls again in float32
from skrr.config.choices import COMPUTE_DTYPES as CHOICES
from skrr.config.choices import DTYPES as DTYPE_NAMES
from skrr.encoders.readout import Readout, readout_of
from skrr.encoders.view import find_sub_block_encoder, to_sub_blocks
from skrr.errors import InputError

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
SLOW = 1.5  # `auto` computes in fp32 where the model's dtype is this many times slower

# The exactness contract: two correct evaluations of D in this compute dtype (the prefix-cached and
# the reference evaluator, another batch shape, another CPU's or GPU's kernels) agree within this
# relative tolerance. A search decision whose relative margin is below it is a near-tie that another
# machine could decide the other way. Measured with benchmarks/search.py (docs/exactness.md): float32
# prefix-cached vs reference up to 1.1e-7 (T5-XXL width), AVX2 vs AVX-512/AMX kernels up to 1.0e-6.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}

# Assumed effective matmul throughput of one H100 SXM per compute dtype, for the GPU cost *estimates*
# (`skrr-prune`'s log, docs/search.md, docs/benchmarks.md); none is measured yet (`make bench-gpu`
# measures). Dense peaks: bf16/fp16 989 TFLOP/s on tensor cores; fp32 67 TFLOP/s on CUDA cores with
# TF32 off, PyTorch's default for matmuls and what an fp32-exact search needs. Effective: about 40% of
# the bf16 peak, 75% of the fp32 one: float32 is 8x bfloat16's cost.
ASSUMED_GPU = "H100"
ASSUMED_TFLOPS = {"bfloat16": 400.0, "float16": 400.0, "float32": 50.0}


@functools.cache
def cpu_slowdown(dtype: torch.dtype) -> float:
    """How many times longer a matmul takes in `dtype` than in fp32 on this CPU (a timed probe of
    a few milliseconds, best of 5, cached for the process)."""
    a, b = torch.randn(256, 512), torch.randn(512, 512)

    def best(x, y):
        x @ y  # warm-up
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(a.to(dtype), b.to(dtype)) / best(a, b)


def choose_compute_dtype(name: str, model_dtype: torch.dtype, device) -> tuple[torch.dtype, str | None]:
    """The dtype the search computes in, and a line for the log when it is not the model's.
    `auto` (opt-in, for speed): the model's dtype unless this CPU lacks native support for it."""
    if name not in CHOICES:
        raise InputError(f"unknown compute_dtype {name!r}; choose from {CHOICES}")
    if name == CERTIFIED:  # float32 targets and decisions; the bf16 pre-scoring is the evaluator's
        return torch.float32, ("the search scores candidates in bfloat16 and the close calls again in float32 "
                               "(method.compute_dtype=certified: float32's decisions)")
    if name != "auto":
        dtype = DTYPES[name]
        return dtype, None if dtype == model_dtype else f"the search computes in {name} (method.compute_dtype)"
    if model_dtype == torch.float32 or torch.device(device).type != "cpu":
        return model_dtype, None
    slow = cpu_slowdown(model_dtype)
    if slow < SLOW:
        return model_dtype, None
    name = str(model_dtype).removeprefix("torch.")
    return torch.float32, (f"this CPU runs {name} matmuls {slow:.1f}x slower than float32 (no native {name}): "
                           f"the search computes in float32, weights stay in {name} (method.compute_dtype overrides)")


@contextlib.contextmanager
def weights_in(dtype: torch.dtype, *modules: nn.Module):
    """Run `modules` with their floating parameters cast to `dtype`; the stored weights are untouched
    (the copies exist only inside the block)."""
    swapped = []
    for module in modules:
        for m in module.modules():
            for name, p in m._parameters.items():
                if p is not None and p.is_floating_point() and p.dtype != dtype:
                    swapped.append((m, name, p))
                    m._parameters[name] = p.detach().to(dtype)
    try:
        yield
    finally:
        for m, name, p in reversed(swapped):
            m._parameters[name] = p


class Forward:
    """f = proj(E(c)) (or E(c)) of a sub-block encoder under a schedule, computed in `dtype`
    (default: the model's own). The calibration targets and D both go through it.

    f is what the pipeline hands its denoiser after the denoiser's own projection: for a readout of
    several hidden states (skrr.encoders.readout) each read state is recorded as the run passes it
    and the final features combine them as the pipeline does. A run's state is then the current
    hidden state with the states recorded so far appended along the channels, so the prefix cache
    and the reference evaluator carry them (a skipped sub-block changes every read state after it)."""

    def __init__(self, text_side, projection: bool = True, dtype: torch.dtype | None = None):
        self.enc = find_sub_block_encoder(text_side.encoder) or to_sub_blocks(text_side.encoder)
        self.projection = text_side.projection if projection else None
        model_dtype = next(self.enc.parameters()).dtype
        self.dtype = dtype or model_dtype
        self.upcast = self.dtype != model_dtype
        self.readout = readout_of(text_side.cfg) if getattr(text_side, "cfg", None) is not None else Readout()
        self.reads, self.record_at = None, {}  # read layer indices; position -> slot of the state recorded there
        if self.readout != Readout():
            reads = self.readout.resolve(self.enc.num_layers)
            if 2 * max(reads) != len(self.enc):
                raise InputError(f"this encoder's view ends after layer {len(self.enc) // 2}, but the model reads "
                                 f"hidden states {list(reads)}")
            if self.readout.combine == "each" and self.projection is not None and len(self.projection) < len(reads):
                raise InputError(f"the model reads {len(reads)} hidden states, each through its own projection, "
                                 f"but its projection has {len(self.projection)} modules")
        if self.readout.combine != "single":  # one state read: the final one, as before
            self.reads = reads
            recorded = sorted({i for i in self.reads if 2 * i != len(self.enc)})
            self.record_at = {2 * i: slot for slot, i in enumerate(recorded)}
        self.width = None  # the hidden width, known from the first prepared state

    def prepare(self, input_ids, attention_mask=None):
        h, ctx = self.enc.prepare(input_ids=input_ids, attention_mask=attention_mask)
        if self.upcast:  # embeddings and position bias as stored, then widened (exact)
            cast = lambda x: x.to(self.dtype) if torch.is_tensor(x) and x.is_floating_point() else x  # noqa: E731
            h, ctx = cast(h), {k: cast(v) for k, v in ctx.items()}
        self.width = h.shape[-1]
        if self._projection_reads_mask:  # LTX-2's connectors normalise over each prompt's real tokens
            ctx = {**ctx, "attention_mask": attention_mask}
        return (torch.cat([h, h], dim=-1) if 0 in self.record_at else h), ctx

    @property
    def _projection_reads_mask(self) -> bool:
        return bool(getattr(self.projection, "reads_mask", False))

    def records(self, position: int) -> bool:
        """Whether the state before `position` is one the pipeline reads (and is not the final one)."""
        return position in self.record_at

    def sub_block(self, src: int, h, ctx):
        branch = self.enc.branches[str(src)]
        if not self.upcast:
            return branch(h, ctx)
        with weights_in(self.dtype, branch):
            return branch(h, ctx)

    def step(self, position: int, src, h, ctx):
        """Run position `position` (sub-block `src`, or nothing when None) on a state, recording the
        result if the pipeline reads it. Without recorded states this is `sub_block` itself."""
        if not self.record_at:
            return h if src is None else self.sub_block(src, h, ctx)
        current, recorded = (h, None) if h.shape[-1] == self.width else (h[..., :self.width].contiguous(),
                                                                         h[..., self.width:])
        if src is not None:
            current = self.sub_block(src, current, ctx)
        parts = [current] + ([recorded] if recorded is not None else [])
        if self.records(position + 1):
            parts.append(current)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else current

    def run(self, h, ctx, schedule, start: int = 0, stop: int | None = None):
        stop = len(schedule) if stop is None else stop
        for position in range(start, stop):
            src = schedule[position]
            if src is not None or self.records(position + 1):
                h = self.step(position, src, h, ctx)
        return h

    def features(self, h, ctx) -> torch.Tensor:
        """The encoder's output (final norm, readout, projection) for final states h, in fp32."""
        with weights_in(self.dtype, *self._finish_modules()) if self.upcast else contextlib.nullcontext():
            f = self.enc.finish(h, ctx) if self.reads is None else self._read(h, ctx)
            dtype = None if self.projection is None else self.dtype if self.upcast else next(self.projection.parameters()).dtype
            if isinstance(f, list):  # combine: each, the i-th state through the i-th projection, side by side
                f = torch.cat([x if self.projection is None else self.projection[i](x.to(dtype)) for i, x in enumerate(f)],
                              dim=-1)
            elif self._projection_reads_mask:
                f = self.projection(f.to(dtype), ctx["attention_mask"])
            elif self.projection is not None:
                f = self.projection(f.to(dtype))
        return f.float()

    def _read(self, h, ctx):
        """The read states, combined as the pipeline combines them (an `each` readout: a list, one per projection)."""
        recorded = h[..., self.width:].split(self.width, dim=-1) if h.shape[-1] > self.width else ()
        current = h[..., :self.width].contiguous() if recorded else h
        by_layer = {i: recorded[self.record_at[2 * i]] for i in self.reads if 2 * i in self.record_at}
        by_layer[len(self.enc) // 2] = self.enc.finish(current, ctx)
        return self.readout.combine_states([by_layer[i].contiguous() for i in self.reads])

    def _finish_modules(self):
        text_model = getattr(self.enc, "_text_model", None)  # CLIP keeps its final norm on the text model
        stack = getattr(self.enc, "_stack", None)  # a decoder's final norm is on its stack (absent when unread)
        if text_model is not None:
            norm = [text_model.final_layer_norm]
        elif stack is not None:
            norm = [stack.norm] if getattr(self.enc, "uses_final_norm", False) else []
        else:
            norm = [self.enc.final_layer_norm]
        return norm + ([self.projection] if self.projection is not None else [])

    def __call__(self, input_ids, attention_mask=None, schedule=None) -> torch.Tensor:
        h, ctx = self.prepare(input_ids, attention_mask)
        return self.features(self.run(h, ctx, self.enc.schedule if schedule is None else schedule), ctx)
