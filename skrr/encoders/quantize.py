"""Weight quantization of a (pruned) text encoder: `model.quantize=none|int8|int4`.

Pruning removes sub-blocks, quantization shrinks the ones kept: the two multiply. The default
backend is torchao (runs on CPU and CUDA): int8 = per-row int8 weights (Int8WeightOnlyConfig),
int4 = int4 values in groups of 32 (IntxWeightOnlyConfig; torchao's CPU path stores them
unpacked, one byte each, so int4 saves no memory over int8 on CPU; `stored_bytes` shows that).
`backend=bitsandbytes` (CUDA only, imported only when asked) uses LLM.int8 / NF4 linears.
Only the Linear layers are quantized; embeddings and norms keep their dtype.
"""
from __future__ import annotations

import torch
from torch import nn

from skrr.errors import InputError

SCHEMES = ("none", "int8", "int4")
BACKENDS = ("torchao", "bitsandbytes")
INT4_GROUP = 32


def validate(scheme, backend: str = "torchao", device: str = "cpu") -> None:
    """Fail fast, before any model loads."""
    if str(scheme) not in SCHEMES:
        raise InputError(f"unknown quantize {scheme!r}; choose from {list(SCHEMES)}")
    if backend not in BACKENDS:
        raise InputError(f"unknown quantize backend {backend!r}; choose from {list(BACKENDS)}")
    if scheme == "none":
        return
    if backend == "bitsandbytes" and not str(device).startswith("cuda"):
        raise InputError("quantize backend bitsandbytes needs a CUDA device; use the torchao backend on CPU")
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        raise InputError(f"model.quantize={scheme} needs the {backend} package: pip install {backend}")


def quantize_encoder(model: nn.Module, scheme: str, backend: str = "torchao", device: str = "cpu") -> nn.Module:
    """Quantize the Linear weights of `model` in place (after pruning: only kept weights exist)."""
    validate(scheme, backend, device)
    if scheme == "none":
        return model
    if backend == "bitsandbytes":
        return _bitsandbytes(model, scheme, device)
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup, quantize_

    if scheme == "int8":
        quantize_(model, Int8WeightOnlyConfig())
    else:
        quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP)),
                  filter_fn=lambda m, _: isinstance(m, nn.Linear) and m.in_features % INT4_GROUP == 0)
    return model


def _bitsandbytes(model: nn.Module, scheme: str, device: str) -> nn.Module:
    import bitsandbytes as bnb

    for name, lin in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        owner, _, leaf = name.rpartition(".")
        if scheme == "int8":
            new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      has_fp16_weights=False, threshold=6.0)
            new.weight = bnb.nn.Int8Params(lin.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    compute_dtype=lin.weight.dtype, quant_type="nf4")
            new.weight = bnb.nn.Params4bit(lin.weight.data.cpu(), requires_grad=False, quant_type="nf4")
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.data.cpu(), requires_grad=False)
        setattr(model.get_submodule(owner) if owner else model, leaf, new.to(device))  # quantized on the move
    return model


def _leaves(t: torch.Tensor):
    """The plain tensors that hold a tensor's data (a quantized tensor's qdata, scales, ...)."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        for n in names:
            yield from _leaves(getattr(t, n))
    else:
        yield t
    for extra in ("SCB", "quant_state"):  # bitsandbytes keeps scales beside the int8 / 4-bit data
        state = getattr(t, extra, None)
        if isinstance(state, torch.Tensor):
            yield state
        elif state is not None and hasattr(state, "absmax"):
            yield from (x for x in vars(state).values() if isinstance(x, torch.Tensor))


def stored_bytes(module: nn.Module) -> int:
    """Bytes of storage the module's weights occupy: every distinct storage under its parameters
    and buffers (quantized data and scales included) counted once; meta tensors count nothing."""
    storages: dict[tuple, int] = {}
    for t in [*module.parameters(), *module.buffers()]:
        for leaf in _leaves(t):
            if leaf.device.type == "meta":
                continue
            s = leaf.untyped_storage()
            storages[(leaf.device.type, s.data_ptr())] = s.nbytes()
    return sum(storages.values())


def settings(model_cfg) -> tuple[str, str]:
    """(scheme, backend) of a model config: its `quantize` and `quantize_backend` keys."""
    return str(model_cfg.get("quantize", "none")), str(model_cfg.get("quantize_backend", "torchao"))
