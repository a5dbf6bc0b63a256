"""skrr-report: paper tables (Markdown + LaTeX) and plots (PNG) from a results store.

    skrr-report runs/results/table1_pixart.jsonl [--out DIR]

Table 1: method, sparsity, FID, CLIP, DreamSim, the six GenEval tasks and Overall, each as
`value ± half-width` of its 95% interval (rows stored without intervals show the value only).
Matched: every method at the paper's 24/32/40%, interpolated between its achieved points or at its
nearest achieved point (skrr.experiments.report.compare). Comparisons: which differences at a level are larger
than their noise, and the paper's claims (a)-(d) as measured (skrr.experiments.report.claims).
Table 2: pipeline parameters, memory (resident weights) and TFLOPs of one generation; the pruned
encoder's memory and its parameters over the encoder as shipped (an unread tail counts as removed).
GenEval 2 (rows that have it): Soft-TIFA GM/AM and the per-skill means (geneval2), the GM per atom
count (geneval2_atoms).
Plots: each metric vs achieved sparsity with 95% error bars (one line per method) and the search's
D vs depth for each beam width k. One table set per model when a results file holds several.
Grids (skrr.experiments.report.grids): grid_<level>.png of dense and each method at each paper level, grid.png of
one method across its sparsities. D vs quality (skrr.experiments.report.d_predicts): d_predicts.md and
d_vs_metrics.png, Spearman's rho of every plan's D against each metric with its interval.
`--wandb` also logs the grids to W&B (offline unless --wandb-mode online), as images and tables.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

from skrr.errors import InputError
from skrr.experiments.report import d_predicts
from skrr.experiments.report.claims import claims, differences, differences_markdown, noise_floor
from skrr.experiments.report.compare import LEVELS, MARKERS, METHOD_NAMES, METHOD_ORDER, Estimate, estimate, matched
from skrr.experiments.report.grids import grids
from skrr.experiments.runner.results import read_results

GENEVAL = [("single_object", "Single"), ("two_object", "Two"), ("counting", "Count."), ("colors", "Colors"),
           ("position", "Pos."), ("color_attr", "Color attr."), ("overall", "Overall")]
TABLE1 = ["Method", "Sparsity", "FID", "CLIP", "DreamSim"] + [name for _, name in GENEVAL]
GENEVAL2 = [("overall", "Soft-TIFA GM"), ("am", "Soft-TIFA AM"), ("object", "Object"), ("attribute", "Attribute"),
            ("count", "Count"), ("position", "Position"), ("verb", "Verb")]
TABLE2 = ["Method", "Sparsity", "Params", "Memory", "TFLOPs", "Encoder", "Encoder / shipped"]
MATCHED = ["Method", "Level", "Sparsity", "FID", "CLIP", "DreamSim", "GenEval overall"]
# settings that do not change a method's result: never used to tell runs apart
NOT_SETTINGS = {"sparsity", "batch_size", "fast", "cache_budget_mb"}
PLOTTED = [("fid", "FID (lower is better)"), ("clip", "CLIP score"), ("dreamsim", "DreamSim score (1 = dense)"),
           ("geneval", "GenEval overall"), ("geneval2", "GenEval 2 Soft-TIFA GM"), ("tflops", "TFLOPs per image"),
           ("params", "Pipeline parameters")]


# --- rows -> labelled points --------------------------------------------------------------
def labels(rows: list[dict]) -> list[str]:
    """Method name plus its settings that differ from the usual value among this method's rows (an
    ablation's variants); when a setting has no single most common value (k = 1..4 once each), every
    row shows it. A row generated from other seeds (the dense noise floor) says so."""
    by_method = defaultdict(dict)  # distinct settings only: re-runs and targets must not shift the usual value
    for r in rows:
        cfg = {k: v for k, v in r["config"]["method"].items() if k not in NOT_SETTINGS}
        by_method[r["method"]][repr(sorted(cfg.items()))] = cfg
    usual = {}
    for m, cfgs in by_method.items():
        cfgs = list(cfgs.values())
        usual[m] = {}
        for k in sorted({k for c in cfgs for k in c} - NOT_SETTINGS):
            counts = Counter(repr(c.get(k)) for c in cfgs)
            if len(counts) > 1:
                (top, n), *rest = counts.most_common()
                usual[m][k] = top if rest[0][1] < n else None  # None: no usual value, always shown
    out = []
    for r in rows:
        name = METHOD_NAMES.get(r["method"], r["method"])
        cfg = r["config"]["method"]
        extra = [f"{k}={cfg.get(k)}" for k, top in usual[r["method"]].items() if top is None or repr(cfg.get(k)) != top]
        if r.get("seed_offset"):
            extra.append(f"seeds +{r['seed_offset']}")
        out.append(f"{name} ({', '.join(extra)})" if extra else name)
    return out


def latest(rows: list[dict]) -> list[dict]:
    """One row per (label, target): the last finished (a store can hold re-runs with new code)."""
    keep = {}
    for r, label in zip(rows, labels(rows)):
        r = {**r, "label": label}
        key = (label, round(r["target"], 4))
        if key not in keep or r["finished_at"] >= keep[key]["finished_at"]:
            keep[key] = r
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(keep.values(), key=lambda r: (order.get(r["method"], len(order)), r["label"], r["target"]))


def metric(row: dict, name: str) -> Estimate | None:
    if name in ("tflops", "params"):
        eff = row["metrics"].get("efficiency") or {}
        v = eff.get("tflops") if name == "tflops" else eff.get("pipeline_params")
        return None if v is None else Estimate(float(v))
    return estimate(row, name)


# --- formatting ------------------------------------------------------------------------------
def num(v, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = format(v, fmt)
    return s.lstrip("-") if float(s) == 0 else s  # no "-0.00" from round-off (e.g. FID of dense vs itself)


def est(e: Estimate | None, fmt: str) -> str:
    """`value ± half-width` of the 95% interval; the value alone for rows stored without one."""
    if e is None:
        return "–"
    return num(e.value, fmt) if e.lo is None else f"{num(e.value, fmt)} ± {num(e.half_width, fmt)}"


def human(v, unit: str = "") -> str:
    if v is None:
        return "–"
    for scale, suffix in ((1e12, "T"), (1e9, "G" if unit == "B" else "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{suffix}{unit}"
    return f"{v:.0f}{unit}"


def table1(rows: list[dict]) -> list[list[str]]:
    return [[r["label"], f"{r['sparsity']:.1%}", est(metric(r, "fid"), ".2f"), est(metric(r, "clip"), ".3f"),
             est(metric(r, "dreamsim"), ".3f")] + [est(estimate(r, "geneval", k), ".3f") for k, _ in GENEVAL]
            for r in rows]


def budget_cell(row: dict) -> str:
    """`used/of` images over the row's prompt sets, `(adaptive)` for a row an adaptive run stopped."""
    b = row.get("budget")
    if not b:
        return "all"
    used, of = sum(b.get("images", {}).values()), sum(b.get("of", {}).values())
    return f"{used}/{of}" + (" (adaptive)" if b.get("mode") == "adaptive" else "")


def with_budget(header: list[str], body: list[list[str]], rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """An Images column when any row was scored on a share of its prompts (eval.fraction, adaptive)."""
    if not any(r.get("budget") for r in rows):
        return header, body
    return header + ["Images"], [line + [budget_cell(r)] for line, r in zip(body, rows)]


def geneval2_tables(rows: list[dict]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]] | None:
    """GenEval 2: Soft-TIFA GM and AM with the per-skill means, and the GM per atom count (the
    columns the rows hold), each `value ± half-width`; None when no row has GenEval 2."""
    scored = [r for r in rows if isinstance(r["metrics"].get("geneval2"), dict)]
    if not scored:
        return None
    skills = [(k, name) for k, name in GENEVAL2 if any(k in r["metrics"]["geneval2"] for r in scored)]
    atoms = sorted({int(k.split("_")[1]) for r in scored for k in r["metrics"]["geneval2"] if k.startswith("atoms_")})
    head = ["Method", "Sparsity"]
    body = [[r["label"], f"{r['sparsity']:.1%}"] + [est(estimate(r, "geneval2", k), ".3f") for k, _ in skills]
            for r in scored]
    by_atoms = [[r["label"], f"{r['sparsity']:.1%}"] + [est(estimate(r, "geneval2", f"atoms_{a}"), ".3f") for a in atoms]
                for r in scored]
    return head + [name for _, name in skills], body, head + [f"{a} atoms" for a in atoms], by_atoms


HOW = {"at": "", "interp": " (interp.)", "nearest": " (nearest)"}


def matched_table(rows: list[dict]) -> list[list[str]]:
    """Each method at each paper level: interpolated between its achieved points, or its nearest one."""
    points = sorted(matched(rows), key=lambda p: (p.level, rows_order(rows, p.label)))
    return [[p.label, f"{p.level:.0%}", f"{p.sparsity:.1%}{HOW[p.how]}", est(p.estimate("fid"), ".2f"),
             est(p.estimate("clip"), ".3f"), est(p.estimate("dreamsim"), ".3f"), est(p.estimate("geneval"), ".3f")]
            for p in points]


def rows_order(rows: list[dict], label: str) -> int:
    return next(i for i, r in enumerate(rows) if r["label"] == label)


def table2(rows: list[dict]) -> list[list[str]]:
    """Pipeline parameters, weight memory and TFLOPs; the pruned encoder's memory and its parameters
    as a share of the encoder as shipped (the unread tail and unused heads count as removed)."""
    out = []
    for r in rows:
        eff = r["metrics"].get("efficiency") or {}
        enc = (eff.get("text_encoders") or {}).get(((r.get("config") or {}).get("model") or {}).get("text_encoder"), {})
        share = enc["params"] / enc["shipped_params"] if enc.get("shipped_params") else None
        out.append([r["label"], f"{r['sparsity']:.1%}", human(eff.get("pipeline_params")),
                    human(eff.get("pipeline_bytes"), "B"), num(eff.get("tflops"), ".4g"), human(enc.get("bytes"), "B"),
                    num(share, ".3f")])
    return out


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"


def latex(header: list[str], body: list[list[str]], caption: str) -> str:
    esc = lambda s: s.replace("\\", "\\textbackslash{}").replace("%", "\\%").replace("_", "\\_").replace("&", "\\&") \
        .replace("–", "--")  # noqa: E731
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(caption)}}}", "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
             "\\toprule", " & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(esc(c) for c in row) + " \\\\" for row in body]
    return "\n".join(lines + ["\\bottomrule", "\\end{tabular}", "\\end{table}"]) + "\n"


def comparisons(rows: list[dict], title: str) -> str:
    """Which differences at each paper level are larger than their noise, and claims (a)-(d)."""
    parts = [f"### {title}: differences at matched sparsity\n", differences_markdown(differences(rows))]
    floor = noise_floor(rows)
    if floor:
        parts.append(floor + "\n")
    parts += [f"### {title}: the paper's claims, as measured here\n", "\n".join(f"- {c}" for c in claims(rows)) + "\n"]
    return "\n".join(parts)


# --- plots -------------------------------------------------------------------------------------
def plot_metrics(rows: list[dict], out: Path, title: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, ylabel in PLOTTED:
        if not any(metric(r, name) is not None for r in rows):
            continue
        fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=120)
        by_label = defaultdict(list)
        for r in rows:
            if metric(r, name) is not None:
                by_label[r["label"]].append((r["sparsity"], metric(r, name)))
        for n, (label, pts) in enumerate(by_label.items()):
            pts.sort(key=lambda p: p[0])
            xs, es = [100 * p[0] for p in pts], [p[1] for p in pts]
            ys = [e.value for e in es]
            err = None if any(e.lo is None for e in es) else \
                [[e.value - e.lo for e in es], [e.hi - e.value for e in es]]  # 95% interval, maybe asymmetric
            if all(x == 0 for x in xs):  # the dense model (and its other-seed twin): a level with its band
                line = ax.axhline(ys[0], color="black", linestyle="--" if label == "Dense" else ":", linewidth=1,
                                  label=label)
                if err is not None:
                    ax.axhspan(es[0].lo, es[0].hi, color=line.get_color(), alpha=0.08)
            else:
                # distinct markers, slightly transparent: methods that land on the same plan overlap
                ax.errorbar(xs, ys, yerr=err, marker=MARKERS[n % len(MARKERS)], alpha=0.8, capsize=3, label=label)
        for level in LEVELS:  # the paper's levels, where the matched table reads the curves
            ax.axvline(100 * level, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("achieved text-encoder sparsity (%)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {ylabel.split(' (')[0]} vs achieved sparsity (95% intervals)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a line
        fig.tight_layout()
        paths.append(out / f"{name}_vs_sparsity.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def plot_depth(rows: list[dict], out: Path, title: str) -> Path | None:
    """D after each search depth, one line per search (beam width k); a search serves several rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for r in rows:
        d = r["plan"].get("depth_d")
        if d and "beam_width" in r["config"]["method"]:  # beam searches only (FinerCut's D is another scale)
            k = r["config"]["method"].get("beam_width")
            extra = r["label"].partition("(")[2].rstrip(")")
            extra = ", ".join(p for p in extra.split(", ") if p and not p.startswith("beam_width="))
            curves.setdefault(f"{r['label'].split(' (')[0]} k={k}" + (f" ({extra})" if extra else ""), d)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=120)
    for n, (label, d) in enumerate(sorted(curves.items())):  # styles differ: equal curves (small k) overlap
        ax.plot(range(1, len(d) + 1), d, marker=MARKERS[n % len(MARKERS)], linestyle=["-", "--", ":", "-."][n % 4],
                alpha=0.8, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("search depth (sub-blocks skipped)")
    ax.set_ylabel("discrepancy D of the best beam")
    ax.set_title(f"{title}: D vs depth", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = out / "d_vs_depth.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def d_quality(rows: list[dict], out: Path, title: str) -> dict:
    """d_predicts.md and d_vs_metrics.png when the rows carry every plan's D."""

    found = d_predicts.ranks(rows)
    if not found:
        return {}
    text = d_predicts.markdown(found, title)
    (out / "d_predicts.md").write_text(text)
    print(text)
    files = {"d_predicts": out / "d_predicts.md"}
    path = d_predicts.plot(rows, found, out / "d_vs_metrics.png", title)
    if path:
        files["d_vs_metrics"] = path
    return files


def near_tie_notes(rows: list[dict]) -> str | None:
    """The rows whose search made a decision closer than the compute dtype's tolerance (a near-tie
    that another machine's rounding could decide the other way), naming the depth or position."""
    lines = [f"- {r['label']} at {r['sparsity']:.2%}: {'; '.join(r['plan']['near_ties'])}"
             for r in rows if r.get("plan", {}).get("near_ties")]
    if not lines:
        return None
    return ("### Near-ties in the searches\n\nThese decisions were closer than the tolerance within which two "
            "correct evaluations of D may differ (docs/exactness.md); on another CPU or GPU the plan may differ "
            "from here on.\n\n" + "\n".join(lines) + "\n")


# --- entry point ---------------------------------------------------------------------------------
def report(results: str | Path, out: str | Path | None = None, grid_method: str = "skrr", grid_prompts: int = 6,
           grid_seed: int = 0, wandb: dict | None = None) -> dict:
    """Write tables, plots and grids for every model in the results file; returns {model: {name: path}}.
    `wandb`: a logger config (skrr.experiments.runner.logging_wandb.log_grids) to log the grids to."""
    results = Path(results)
    found = read_results(results)
    if not found.rows:
        raise InputError(f"{found.summary()}; nothing to report (run a sweep first)")
    print(f"read {found.summary()}")  # what was found, malformed lines included: none is dropped in silence
    rows = found.rows
    out = Path(out) if out else results.parent.parent / "reports" / results.stem
    by_model = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    written = {}
    for model, model_rows in by_model.items():
        d = out / model if len(by_model) > 1 else out
        d.mkdir(parents=True, exist_ok=True)
        pts = latest(model_rows)
        title = f"{results.stem} ({model})"
        files = {}
        has_quality = any(k in r["metrics"] for r in pts for k in ("fid", "clip", "dreamsim", "geneval", "geneval2"))
        gv2 = geneval2_tables(pts)
        has_efficiency = any("efficiency" in r["metrics"] for r in pts)
        has_pruned = any(r["sparsity"] > 0 for r in pts)
        for name, header, body, caption in (
                ("table1", *(with_budget(TABLE1, table1(pts), pts) if has_quality else (TABLE1, None)),
                 f"{title}: quality vs text-encoder sparsity (value ± 95% half-width)" + (
                     "; Images: how many of the prompt sets' images a row was scored on (adaptive: it stopped "
                     "when its comparisons were decided, docs/evaluation.md)" if any(r.get("budget") for r in pts)
                     else "")),
                ("matched", MATCHED, matched_table(pts) if has_quality and has_pruned else None,
                 f"{title}: methods at the paper's sparsity levels (interp.: linear interpolation between the "
                 "method's achieved points; nearest: its nearest achieved point, at the sparsity shown)"),
                ("table2", TABLE2, table2(pts) if has_efficiency else None,
                 f"{title}: pipeline parameters, weight memory and TFLOPs per image; the pruned encoder's weight memory "
                 "and its parameters over the encoder as shipped (an unread tail and unused heads count as removed)"),
                ("geneval2", *(gv2[:2] if gv2 else (None, None)),
                 f"{title}: GenEval 2, Soft-TIFA GM and AM and the mean soft answer per skill (0-1; GenEval 2 "
                 "prints them x100), value ± 95% half-width"),
                ("geneval2_atoms", *(gv2[2:] if gv2 else (None, None)),
                 f"{title}: GenEval 2 Soft-TIFA GM per prompt atom count, value ± 95% half-width")):
            if body is None:  # e.g. an efficiency-only sweep has no Table 1
                continue
            md = markdown(header, body)
            (d / f"{name}.md").write_text(f"### {caption}\n\n{md}")
            (d / f"{name}.tex").write_text(latex(header, body, caption))
            files[name] = d / f"{name}.md"
            print(f"### {caption}\n\n{md}")
        if has_quality and has_pruned:
            text = comparisons(pts, title)
            (d / "comparisons.md").write_text(text)
            files["comparisons"] = d / "comparisons.md"
            print(text)
        for p in plot_metrics(pts, d, title):
            files[p.stem] = p
        ties = near_tie_notes(pts)
        if ties:
            (d / "near_ties.md").write_text(ties)
            files["near_ties"] = d / "near_ties.md"
            print(ties)
        depth = plot_depth(pts, d, title)
        if depth:
            files["d_vs_depth"] = depth
        files |= d_quality(pts, d, title)
        drawn = grids(pts, d, title, grid_method, grid_prompts, grid_seed)
        files |= {name: path for name, (path, _) in drawn.items()}
        if drawn and wandb is not None:
            from skrr.experiments.runner.logging_wandb import log_grids

            log_grids(wandb, drawn, f"{results.stem}-{model}")
        written[model] = files
    print(f"wrote tables and plots to {out}")
    return written
