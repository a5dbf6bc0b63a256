"""The plan: which sub-blocks are skipped and which skipped positions re-use a kept one.

Every method writes one; every later stage reads one. A hand-written plan needs only `skip`
(and optionally `reuse`); everything else is filled in or checked against the encoder.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skrr.errors import InputError, MissingFile
from skrr.hub.atomic import atomic_path

if TYPE_CHECKING:  # a plan is read and checked before torch loads (the console scripts' checks)
    from skrr.encoders.view import SubBlock

FORMAT = "skrr-plan/1"
# Keys that name a checkpoint rather than the architecture; excluded from the config hash.
_VOLATILE = {"_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "use_cache",
             "is_encoder_decoder", "_attn_implementation_autoset", "output_hidden_states"}


class PlanError(InputError):
    pass


def config_hash(config) -> str:
    if hasattr(config, "dense_config"):  # a pruned encoder's config: hash the encoder it was pruned from
        config = config.dense_config()
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    if hasattr(config, "to_dict"):  # keys the config class does not know (e.g. T5's `output_past`) shape nothing
        known = type(config)().to_dict()
        d = {k: v for k, v in d.items() if k in known}
    d = {k: v for k, v in d.items() if k not in _VOLATILE and not k.startswith("_")}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Plan:
    skip: list[int]
    reuse: dict[int, int] = field(default_factory=dict)
    encoder: dict | None = None  # {"name": ..., "config_hash": ..., "num_sub_blocks": ...}
    sparsity: float | None = None
    method: dict = field(default_factory=dict)  # name and settings
    weights: str | None = None  # file of changed weights beside plan.json (LaCo merges)
    info: dict = field(default_factory=dict)  # search trace, D per depth, ...

    def schedule(self, n: int) -> list[int | None]:
        return make_schedule(n, self.skip, self.reuse)

    # --- validation -------------------------------------------------------------------
    def validate(self, sub_blocks: list[SubBlock], config=None, name: str | None = None) -> Plan:
        """Check the plan against an encoder and fill in its identity. Raises PlanError."""
        n = len(sub_blocks)
        if len(set(self.skip)) != len(self.skip):
            raise PlanError(f"plan skips a sub-block twice: {self.skip}")
        for i in self.skip:
            if not isinstance(i, int) or not 0 <= i < n:
                raise PlanError(f"plan skips sub-block {i!r}, but the encoder has sub-blocks 0..{n - 1}")
        skipped = set(self.skip)
        for pos, src in self.reuse.items():
            if pos not in skipped:
                raise PlanError(f"re-use at position {pos}, which the plan does not skip")
            if not isinstance(src, int) or not 0 <= src < n or src in skipped:
                raise PlanError(f"position {pos} re-uses sub-block {src}, which is not a kept sub-block")
            if sub_blocks[src].kind != sub_blocks[pos].kind:
                raise PlanError(f"position {pos} ({sub_blocks[pos].kind}) cannot re-use sub-block {src} "
                                f"({sub_blocks[src].kind}): types differ")
        if config is not None:
            h = config_hash(config)
            if self.encoder and self.encoder.get("config_hash") not in (None, h):
                raise PlanError(f"plan was made for encoder {self.encoder.get('name')!r} "
                                f"(config hash {self.encoder['config_hash']}), not this one (config hash {h})")
            if self.encoder and self.encoder.get("num_sub_blocks") not in (None, n):
                raise PlanError(f"plan is for an encoder with {self.encoder['num_sub_blocks']} sub-blocks, this one has {n}")
            self.encoder = {"name": (self.encoder or {}).get("name") or name, "config_hash": h, "num_sub_blocks": n}
        return self

    # --- I/O --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["reuse"] = {str(k): v for k, v in sorted(self.reuse.items())}
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        if "skip" not in d:
            raise PlanError("a plan needs a 'skip' list of sub-block indices")
        try:
            reuse = {int(k): int(v) for k, v in (d.get("reuse") or {}).items()}
            skip = [int(i) for i in d["skip"]]
        except (TypeError, ValueError) as e:
            raise PlanError(f"plan indices must be integers: {e}") from None
        known = {f for f in cls.__dataclass_fields__}
        extra = {k: v for k, v in d.items() if k in known and k not in ("skip", "reuse")}
        return cls(skip=skip, reuse=reuse, **extra)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan as JSON. Changed weights a method left in `info["_weights"]` (LaCo's
        merges) go beside it as `<stem>_weights.safetensors`, named in `weights`."""
        path = Path(path)
        changed = self.info.pop("_weights", None)
        if changed:
            self.weights = _save_tensors_atomic(changed, path.with_name(f"{path.stem}_weights.safetensors"))
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """A plan file or a directory holding plan.json (`skrr.presets.load_plan` also takes the
        paper's presets, `paper:pixart_sigma/skrr@0.40`)."""
        if str(path).startswith("paper:"):
            raise PlanError(f"{path} is a preset, not a file: read it with skrr.presets.load_plan")
        path = Path(path)
        if path.is_dir():
            path = path / "plan.json"
        if not path.is_file():
            raise MissingFile(f"plan file not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise PlanError(f"{path} is not valid JSON: {e}") from None
        plan = cls.from_dict(d)
        plan.info.setdefault("path", str(path))
        return plan


def plan_file_name(target: float) -> str:
    """The file of one sparsity target's plan when a search serves several (`plan_0.4000.json`):
    the one format of skrr-prune's run folders and the results store's plans stage."""
    return f"plan_{target:.4f}.json"


def make_schedule(n: int, skip, reuse: dict | None = None) -> list[int | None]:
    """The sub-block run at each of the n positions: itself if kept, the re-used one (or None) if skipped."""
    skipped, reuse = set(skip), reuse or {}
    return [reuse.get(i) if i in skipped else i for i in range(n)]


def sparsity(sub_blocks: list[SubBlock], skip, total: int) -> float:
    """Parameters removed / all encoder parameters. Re-use shares weights: it changes nothing."""
    return sum(sub_blocks[i].num_params for i in skip) / total


def _save_tensors_atomic(tensors: dict, path: Path) -> str:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    return path.name


def write_json_atomic(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
