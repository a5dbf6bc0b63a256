"""skrr-report: paper tables (Markdown + LaTeX) and plots (PNG) from a results store.

    skrr-report runs/results/table1_pixart.jsonl [--out DIR]

Table 1: method, sparsity, FID, CLIP, DreamSim, the six GenEval tasks and Overall.
Table 2: pipeline parameters, memory (resident weights) and TFLOPs of one generation.
Plots: each metric vs achieved sparsity (one line per method) and the search's D vs depth for
each beam width k. One table set per model when a results file holds several.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

from experiments.results import read_results

METHOD_ORDER = ["dense", "shortgpt", "laco", "finercut", "skrr"]
METHOD_NAMES = {"dense": "Dense", "shortgpt": "ShortGPT", "laco": "LaCo", "finercut": "FinerCut", "skrr": "Skrr"}
GENEVAL = [("single_object", "Single"), ("two_object", "Two"), ("counting", "Count."), ("colors", "Colors"),
           ("position", "Pos."), ("color_attr", "Color attr."), ("overall", "Overall")]
TABLE1 = ["Method", "Sparsity", "FID", "CLIP", "DreamSim"] + [name for _, name in GENEVAL]
TABLE2 = ["Method", "Sparsity", "Params", "Memory", "TFLOPs"]
# settings that do not change a method's result: never used to tell runs apart
NOT_SETTINGS = {"sparsity", "batch_size", "fast", "cache_budget_mb"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
PLOTTED = [("fid", "FID (lower is better)"), ("clip", "CLIP score"), ("dreamsim", "DreamSim score (1 = dense)"),
           ("geneval", "GenEval overall"), ("tflops", "TFLOPs per image"), ("params", "Pipeline parameters")]


# --- rows -> labelled points --------------------------------------------------------------
def labels(rows: list[dict]) -> list[str]:
    """Method name plus the method settings that differ between this method's rows (ablations)."""
    by_method = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append(r["config"]["method"])
    varying = {}
    for m, cfgs in by_method.items():
        keys = sorted({k for c in cfgs for k in c} - NOT_SETTINGS)
        varying[m] = [k for k in keys if len({repr(c.get(k)) for c in cfgs}) > 1]
    out = []
    for r in rows:
        name = METHOD_NAMES.get(r["method"], r["method"])
        extra = ", ".join(f"{k}={r['config']['method'].get(k)}" for k in varying[r["method"]])
        out.append(f"{name} ({extra})" if extra else name)
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


def metric(row: dict, name: str):
    m = row["metrics"]
    if name == "geneval":
        return (m.get("geneval") or {}).get("overall")
    if name in ("tflops", "params"):
        eff = m.get("efficiency") or {}
        return eff.get("tflops") if name == "tflops" else eff.get("pipeline_params")
    v = m.get(name)
    return v if isinstance(v, (int, float)) else None


# --- formatting ------------------------------------------------------------------------------
def num(v, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = format(v, fmt)
    return s.lstrip("-") if float(s) == 0 else s  # no "-0.00" from round-off (e.g. FID of dense vs itself)


def human(v, unit: str = "") -> str:
    if v is None:
        return "–"
    for scale, suffix in ((1e12, "T"), (1e9, "G" if unit == "B" else "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{suffix}{unit}"
    return f"{v:.0f}{unit}"


def table1(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        g = r["metrics"].get("geneval") or {}
        out.append([r["label"], f"{r['sparsity']:.1%}", num(metric(r, "fid"), ".2f"), num(metric(r, "clip"), ".3f"),
                    num(metric(r, "dreamsim"), ".3f")] + [num(g.get(k), ".3f") for k, _ in GENEVAL])
    return out


def table2(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        eff = r["metrics"].get("efficiency") or {}
        out.append([r["label"], f"{r['sparsity']:.1%}", human(eff.get("pipeline_params")),
                    human(eff.get("pipeline_bytes"), "B"), num(eff.get("tflops"), ".4g")])
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
            pts.sort()
            xs, ys = [100 * p[0] for p in pts], [p[1] for p in pts]
            if label == "Dense" and len(pts) == 1:
                ax.axhline(ys[0], color="black", linestyle="--", linewidth=1, label="Dense")
            else:
                # distinct markers, slightly transparent: methods that land on the same plan overlap
                ax.plot(xs, ys, marker=MARKERS[n % len(MARKERS)], alpha=0.8, label=label)
        ax.set_xlabel("text-encoder sparsity (%)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {ylabel.split(' (')[0]} vs sparsity", fontsize=10)
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


# --- entry point ---------------------------------------------------------------------------------
def report(results: str | Path, out: str | Path | None = None) -> dict:
    """Write tables and plots for every model in the results file; returns {model: {name: path}}."""
    results = Path(results)
    found = read_results(results)
    if not found.rows:
        raise ValueError(f"{found.summary()}; nothing to report (run a sweep first)")
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
        has_quality = any(k in r["metrics"] for r in pts for k in ("fid", "clip", "dreamsim", "geneval"))
        has_efficiency = any("efficiency" in r["metrics"] for r in pts)
        for name, header, body, caption in (
                ("table1", TABLE1, table1(pts) if has_quality else None, f"{title}: quality vs text-encoder sparsity"),
                ("table2", TABLE2, table2(pts) if has_efficiency else None,
                 f"{title}: pipeline parameters, weight memory and TFLOPs per image")):
            if body is None:  # e.g. an efficiency-only sweep has no Table 1
                continue
            md = markdown(header, body)
            (d / f"{name}.md").write_text(f"### {caption}\n\n{md}")
            (d / f"{name}.tex").write_text(latex(header, body, caption))
            files[name] = d / f"{name}.md"
            print(f"### {caption}\n\n{md}")
        for p in plot_metrics(pts, d, title):
            files[p.stem] = p
        depth = plot_depth(pts, d, title)
        if depth:
            files["d_vs_depth"] = depth
        written[model] = files
    print(f"wrote tables and plots to {out}")
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description="paper tables and plots from a skrr results store")
    parser.add_argument("results", help="results file, e.g. runs/results/table1_pixart.jsonl")
    parser.add_argument("--out", default=None, help="output folder (default: <root>/reports/<experiment>)")
    args = parser.parse_args(argv)
    try:
        report(args.results, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
