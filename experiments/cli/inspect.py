"""skrr-inspect: `skrr-inspect model=pixart_sigma [plan=plan.json] [compare=other.json] [calibration=...]`.

Prints the text encoder's sub-block table (index, block, type, parameters) and its total; with a
plan, what each sub-block becomes, the plan's sparsity and the pipeline's parameters before and
after. Plans may be presets (`plan=paper:pixart_sigma/skrr@0.40`). With `compare`, the two
plans' shared skipped sub-blocks and Jaccard index; with a calibration set too, the D of each
(which loads the encoder's weights). Real models are built on the meta device from shipped
configs (offline, no weights); tiny ones are loaded (built offline on first use). Read-only: it
writes nothing but the calibration targets' cache (as skrr-prune does).
"""
from __future__ import annotations

import sys

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from skrr.errors import InputError, UnknownName
from skrr.experiments.cli.app import CONF_DIR, check_command_line, fail_fast


def pipeline_components(cfg: DictConfig) -> dict:
    """The pipeline's modules: on meta from shipped configs where the model has them, else loaded."""
    from torch import nn

    from skrr.models import load_pipeline, meta_components

    if cfg.get("meta_configs"):
        return meta_components(cfg)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # a table tool: keep the terminal clean
    transformers_logging.disable_progress_bar()
    pipe = load_pipeline(cfg)
    return {name: c for name, c in pipe.components.items() if isinstance(c, nn.Module)}


def _role(i: int, plan) -> str:
    if plan is None or i not in plan.skip:
        return "kept"
    return f"re-use {plan.reuse[i]}" if i in plan.reuse else "skip"


def encoder_notes(encoder, view, dense_encoder: int, unused: int, reads: str) -> list[str]:
    """What `encoder parameters` counts when it is not the whole encoder module."""
    from skrr.encoders.decoder_only import tower
    from skrr.encoders.view import count_params

    notes = []
    if unused:
        notes.append(f"  the pipeline reads {reads}: the {view.num_layers - view.used_layers} layer(s) after "
                     f"the deepest (marked unread) and the final norm ({unused:,} parameters; {dense_encoder + unused:,} "
                     f"with them) never reach the image and are removed by every plan; sparsity counts the rest")
    dropped = getattr(view, "dropped_params", 0)
    if dropped:
        heads = "the vision tower and LM head" if hasattr(getattr(encoder, "model", None), "language_model") else "the LM head"
        serve, them = ("serve", "them") if " and " in heads else ("serves", "it")
        notes.append(f"  language tower only: {heads} ({dropped:,} parameters) {serve} no text-to-image call "
                     f"and every plan removes {them} too")
    if dropped:
        notes.append(f"  the encoder as shipped: {dense_encoder + unused + dropped:,} parameters")
    elif tower(encoder) is not encoder:
        rest = count_params(encoder) - count_params(tower(encoder))
        if rest:
            what = "the vision tower and LM head" if hasattr(getattr(encoder, "model", None), "visual") else "the LM head"
            notes.append(f"  language tower only: {what} ({rest:,} parameters) stay as they are")
    return notes


def _read_marks(cfg, view) -> dict[int, str]:
    """Sub-block index -> `read: hidden_states[k]` for the sub-blocks whose output the pipeline reads."""
    from skrr.encoders.readout import Readout, readout_of

    if readout_of(cfg) == Readout() or not hasattr(view, "num_layers"):
        return {}
    from skrr.models import check_readout

    return {2 * k - 1: f"read: hidden_states[{k}]" for k in check_readout(cfg, view.num_layers) if k > 0}


def report(cfg: DictConfig) -> list[str]:
    plan = load_plan(cfg.plan)  # fails before any model work (and before torch loads)
    other = load_plan(cfg.get("compare"))
    if other is not None and plan is None:
        raise InputError("compare=B needs a plan to compare with: plan=A compare=B")
    from skrr import apply_plan, to_sub_blocks
    from skrr.encoders.view import count_params, total_params

    components = pipeline_components(cfg.model)
    if cfg.model.text_encoder not in components:
        raise UnknownName(f"model {cfg.model.name!r} has no component {cfg.model.text_encoder!r}")
    encoder = components[cfg.model.text_encoder]
    from skrr.models import prepare_encoder

    view = to_sub_blocks(prepare_encoder(encoder, cfg.model))  # ends at the deepest hidden state read
    blocks = view.sub_blocks
    marks = _read_marks(cfg.model, view)
    unread = list(getattr(view, "unread_sub_block_params", []))
    dense_encoder = total_params(encoder)
    unused = getattr(view, "unused_params", 0)  # a tail the pipeline never reads, freed by the view
    dense_pipeline = sum(count_params(m) for m in components.values()) + unused + getattr(view, "dropped_params", 0)
    if plan is not None:
        apply_plan(encoder, plan, name=cfg.model.name)  # validates: range, duplicates, re-use, encoder identity

    notes = bool(marks or unread)  # a column saying which states the pipeline reads and which layers it never does
    rows = [("index", "block", "type", "parameters") + (("plan",) if plan else ()) + (("read",) if notes else ())]
    rows += [(str(b.index), str(b.block), b.kind, f"{b.num_params:,}") + ((_role(b.index, plan),) if plan else ())
             + ((marks.get(b.index, ""),) if notes else ()) for b in blocks]
    rows += [(str(len(blocks) + i), str((len(blocks) + i) // 2), "attn" if i % 2 == 0 else "ffn", f"{n:,}")
             + (("removed",) if plan else ()) + ("unread",) for i, n in enumerate(unread)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [f"model: {cfg.model.name}   encoder: {cfg.model.text_encoder} ({type(encoder).__name__}, "
             f"{len(blocks)} sub-blocks)"]
    lines += ["  ".join(v.rjust(w) if c not in (2, 4, 5) else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    lines.append(f"encoder parameters: {dense_encoder:,}")
    reads = (f"hidden states {sorted(int(m.rpartition('[')[2][:-1]) for m in marks.values())}" if len(marks) > 1
             else f"hidden state {getattr(view, 'hidden_state', -1)}")
    lines += encoder_notes(encoder, view, dense_encoder, unused, reads)
    if plan is None:
        lines.append(f"pipeline parameters: {dense_pipeline:,}")
        return lines
    from skrr.encoders.decoder_only import tower

    removed = dense_encoder - count_params(tower(encoder))
    lines += [f"plan: skip {len(plan.skip)}, re-use {len(plan.reuse)}",
              f"sparsity: {100 * plan.sparsity:.2f}%",
              f"encoder parameters after: {dense_encoder - removed:,}",
              f"pipeline parameters: {dense_pipeline:,} -> {dense_pipeline - removed:,}"]
    if other is not None:
        from skrr.plan import sparsity

        other.validate(blocks, encoder.config, cfg.model.name)
        lines += compare_lines(plan, other, sparsity(blocks, other.skip, dense_encoder))
        if cfg.get("calibration"):
            lines += discrepancy_lines(cfg, [plan, other])
    return lines


def load_plan(spec):
    from skrr.presets import is_preset
    from skrr.presets import load_plan as read_plan

    if not spec:
        return None
    return read_plan(str(spec) if is_preset(str(spec)) else to_absolute_path(str(spec)))


def compare_lines(a, b, b_sparsity: float) -> list[str]:
    shared = sorted(set(a.skip) & set(b.skip))
    union = set(a.skip) | set(b.skip)
    jaccard = len(shared) / len(union) if union else 1.0
    return [f"compare: skip {len(b.skip)}, re-use {len(b.reuse)}, sparsity {100 * b_sparsity:.2f}%",
            f"shared skipped sub-blocks: {len(shared)} {shared}",
            f"only in plan: {sorted(set(a.skip) - set(b.skip))}   only in compare: {sorted(set(b.skip) - set(a.skip))}",
            f"jaccard: {jaccard:.3f}"]


def discrepancy_lines(cfg: DictConfig, plans) -> list[str]:
    """D (Skrr's default discrepancy: projected MSE with the null term) of each plan on the calibration set."""
    import torch

    from skrr.prune import make_context

    ctx = make_context(cfg.model, cfg.calibration, device=cfg.device, progress=False)
    disc = ctx.discrepancy(metric="mse", projection=True, null_term=True)
    with torch.no_grad():
        ds = [disc(p.schedule(len(ctx.sub_blocks))) for p in plans]
    return [f"D on {len(ctx.calib.prompts)} calibration prompts: plan {ds[0]:.6g}   compare {ds[1]:.6g}"]


@hydra.main(config_path=CONF_DIR, config_name="inspect", version_base=None)
def _app(cfg: DictConfig) -> None:
    with fail_fast("nothing was written: run the same command again"):
        print("\n".join(report(cfg)))


def main() -> None:
    # An unknown model is a Hydra composition error (a multi-line message): name the fix in one
    # line, before torch is even imported (skrr is imported lazily above for the same reason).
    check_command_line("inspect", sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
