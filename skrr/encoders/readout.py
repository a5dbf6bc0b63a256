"""What a pipeline reads from its text encoder: one hidden state, several stacked, or each of many.

`hidden_states[k]` is the stock transformers numbering: 0 the embeddings, k the output of layer k
(the last one after the final norm), negative counting from the end. A readout resolves its
indices against the encoder's depth; the deepest one read is where the sub-block view ends (the
layers after it and an unread final norm never reach the image). `combine` turns the read states
into what the pipeline hands its denoiser:

- `single`: the one state (PixArt, SD3, FLUX, Sana, Lumina 2, Qwen-Image, Z-Image, Chroma);
- `stack`: `torch.stack(states, 1)`, then each token's channels of all states side by side,
  `(B, C, L, D) -> (B, L, C * D)` (FLUX.2's `_get_mistral_3_small_prompt_embeds`, FLUX.2-klein);
- `interleave`: `torch.stack(states, -1).flatten(2)`, each channel's read states side by side,
  `(B, L, D, C) -> (B, L, D * C)` (LTX-2's `_get_gemma_prompt_embeds`, which reads the embeddings and
  every layer);
- `each`: the i-th read state goes to the i-th module of the projection (a ModuleList: HiDream's
  caption_projection, one per denoiser block; a state may be read by several); the search compares
  the projected states side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from skrr.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

COMBINES = ("single", "stack", "interleave", "each")


@dataclass(frozen=True)
class Readout:
    """Indices into `hidden_states` (a tuple of ints, or "all": 1..N, every layer's output) and how
    they are combined."""
    layers: tuple | str = (-1,)
    combine: str = "single"

    def __post_init__(self):
        if self.combine not in COMBINES:
            raise ConfigError("readout.combine", f"must be one of {COMBINES}, got {self.combine!r}")
        if isinstance(self.layers, str):
            if self.layers != "all":
                raise ConfigError("readout.hidden_states", f"must be a list of layer indices or 'all', got {self.layers!r}")
            return
        layers = tuple(self.layers)
        if not layers or not all(isinstance(k, int) and not isinstance(k, bool) for k in layers):
            raise ConfigError("readout.hidden_states", f"must be a non-empty list of integer layer indices, got {list(layers)}")
        if len(set(layers)) != len(layers) and self.combine != "each":  # each: one state may feed several projections
            raise ConfigError("readout.hidden_states", f"lists a layer twice: {list(layers)}")
        if self.combine == "single" and len(layers) != 1:
            raise ConfigError("readout.combine", f"is single but {len(layers)} hidden states are read; use stack or each")
        object.__setattr__(self, "layers", layers)

    def resolve(self, num_layers: int, key: str = "readout.hidden_states") -> tuple[int, ...]:
        """The read indices as 0..num_layers, in the pipeline's order; one that does not exist fails naming `key`."""
        if self.layers == "all":
            return tuple(range(1, num_layers + 1))
        out = []
        for k in self.layers:
            i = k if k >= 0 else num_layers + 1 + k
            if not 0 <= i <= num_layers:
                raise InputError(f"{key}: hidden state {k} does not exist in a {num_layers}-layer encoder "
                                 f"(0 is the embeddings, {num_layers} or -1 the last layer's output)")
            out.append(i)
        if len(set(out)) != len(out) and self.combine != "each":
            raise InputError(f"{key}: {list(self.layers)} reads the same hidden state twice in a {num_layers}-layer encoder")
        return tuple(out)

    def view_end(self, num_layers: int) -> int:
        """The hidden state the sub-block view ends at, as a negative index (-1: the whole encoder)."""
        return max(self.resolve(num_layers)) - num_layers - 1

    def combine_states(self, states: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """The read states (in the pipeline's order) as the pipeline combines them before its denoiser."""
        if self.combine == "single":
            return states[0]
        if self.combine == "stack":
            import torch  # only here: a readout is read and checked with a model's config, before torch loads

            out = torch.stack(states, dim=1)
            batch, channels, length, width = out.shape
            return out.permute(0, 2, 1, 3).reshape(batch, length, channels * width)
        if self.combine == "interleave":
            import torch

            return torch.stack(states, dim=-1).flatten(2, 3)
        return list(states)

    def read(self, hidden_states, num_layers: int):
        """What the pipeline takes from a stock `hidden_states` tuple."""
        return self.combine_states([hidden_states[i] for i in self.resolve(num_layers)])


def readout_of(cfg) -> Readout:
    """A model config's readout: its `readout` ({hidden_states: [...] | all, combine: ...}), or the
    one `hidden_state` it reads (default -1)."""
    get = cfg.get if hasattr(cfg, "get") else lambda key, default=None: getattr(cfg, key, default)  # a config or a Model
    spec, hidden_state = get("readout"), get("hidden_state", -1)
    hidden_state = -1 if hidden_state is None else hidden_state
    if isinstance(hidden_state, bool) or not float(hidden_state).is_integer():
        raise ConfigError("hidden_state", f"must be a whole number (a layer index, -1 the last), got {hidden_state!r}")
    if not spec:
        return Readout((int(hidden_state),), "single")
    if int(hidden_state) != -1:
        raise ConfigError("readout", "and hidden_state are both set: a readout lists every hidden state read")
    unknown = sorted(set(spec) - {"hidden_states", "combine"})
    if unknown:
        raise ConfigError(f"readout.{unknown[0]}", "is not a readout setting (hidden_states, combine)")
    if "hidden_states" not in spec:
        raise ConfigError("readout.hidden_states", "is missing: the hidden states the pipeline reads, or 'all'")
    layers = spec["hidden_states"]
    layers = layers if isinstance(layers, str) else tuple(layers)
    combine = spec.get("combine", "single" if not isinstance(layers, str) and len(layers) == 1 else "stack")
    return Readout(layers, str(combine))
