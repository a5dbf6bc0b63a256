"""Qualitative grids, as in the paper's figures: one prompt per row; dense and each method across.

    grid_24.png, grid_32.png, grid_40.png   dense + every Table 1 method at that paper level
    grid.png                                dense + one method (default Skrr) at each of its sparsities

Every image is captioned with its own GenEval verdict (correct / wrong, from the stored per-image
scores) and its similarity to the dense image of the same prompt and seed; each column names its
method and achieved sparsity. For the toy world the render of the prompt's true scene comes first.

Which prompts: `choose_prompts` draws them with a seeded generator, one per GenEval task in turn
(single object, two objects, counting, colours, position, colour attribution, then again), so a
grid spans every task; without GenEval scores it draws from all prompts.
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skrr.errors import InputError
from skrr.experiments.report.compare import DENSE, LEVELS, METHOD_NAMES, is_dense, items

TASK_ORDER = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
TASK_NAMES = {"single_object": "single object", "two_object": "two objects", "counting": "counting",
              "colors": "colours", "position": "position", "color_attr": "colour attribution"}
GRID_METHODS = (DENSE, "shortgpt", "laco", "finercut", "skrr")  # the Table 1 methods (ablations stay out)
CELL_PX = 128  # every image is drawn at this size (the toy world's 32 px upscaled 4x, nearest)


@dataclass
class Prompt:
    key: str          # "seed|prompt": the same image in every run (skrr.eval.per_item.item_keys)
    text: str
    task: str | None


@dataclass
class Column:
    title: str        # method and achieved sparsity
    row: dict | None  # None: the true-scene column


def image_folder(row: dict) -> Path | None:
    """The folder of a row's images that GenEval scored (the text set when there is no GenEval set)."""
    base = (row.get("artifacts") or {}).get("images")
    if not base:
        return None
    return Path(base) / "geneval" if (Path(base) / "geneval").is_dir() else Path(base) / "text"


def image_index(folder: Path | None) -> dict[str, tuple[int, Path]]:
    """{"seed|prompt": (index, image path)} of a finished image folder (first image of each key)."""
    from skrr.eval.generate import METADATA, image_name

    meta = None if folder is None else folder / METADATA
    if meta is None or not meta.is_file():
        return {}
    out = {}
    for line in meta.read_text().splitlines():
        if line.strip():
            m = json.loads(line)
            out.setdefault(f"{int(m['seed'])}|{m['prompt']}", (int(m["index"]), folder / image_name(int(m["index"]))))
    return out


def choose_prompts(dense: dict, n: int = 6, seed: int = 0) -> list[Prompt]:
    """n prompts of the dense row's images: seeded, one per GenEval task in turn (tasks from the
    stored GenEval per-image scores), or drawn from all prompts when there are none."""
    rng = np.random.default_rng(seed)
    index = image_index(image_folder(dense))
    if not index:
        raise InputError(f"no images listed in {image_folder(dense)}; the grids need the run's image folders")
    gen = items(dense, "geneval")
    if gen is None or gen.strata is None:
        keys = sorted(index)
        picked = [keys[int(i)] for i in rng.choice(len(keys), size=min(n, len(keys)), replace=False)]
        return [Prompt(k, k.partition("|")[2], None) for k in picked]
    by_task: dict[str, list[str]] = {}
    for key, task in zip(gen.keys.tolist(), gen.strata.tolist()):
        if key in index and key not in by_task.get(task, []):
            by_task.setdefault(task, []).append(key)
    tasks = [t for t in TASK_ORDER if t in by_task] + sorted(set(by_task) - set(TASK_ORDER))
    pools = {t: [by_task[t][int(i)] for i in rng.permutation(len(by_task[t]))] for t in tasks}
    out = []
    while len(out) < n and any(pools.values()):
        for t in tasks:
            if pools[t] and len(out) < n:
                key = pools[t].pop(0)
                out.append(Prompt(key, key.partition("|")[2], t))
    return out


def verdicts(row: dict) -> tuple[dict[str, float], dict[str, float]]:
    """({key: GenEval correct 0/1}, {key: similarity to dense}) from the row's per-image scores."""
    out = []
    for name in ("geneval", "dreamsim"):
        it = items(row, name)
        out.append({} if it is None or it.kind != "mean" else dict(zip(it.keys.tolist(), it.values.tolist())))
    return out[0], out[1]


def caption(row: dict, key: str, scores: tuple[dict, dict]) -> str:
    geneval, sim = scores
    parts = []
    if key in geneval:
        parts.append("GenEval ✓" if geneval[key] >= 0.5 else "GenEval ✗")
    if key in sim and row["sparsity"] > 0:
        parts.append(f"sim {sim[key]:.2f}")
    return "  ".join(parts) or "–"


def true_scenes(row: dict, prompts: list[Prompt]) -> list[np.ndarray] | None:
    """The toy world's render of each prompt's true scene (None for any other model): the prompt
    set is rebuilt from the row's config and the image index names the scene."""
    source = ((row["config"].get("eval") or {}).get("prompts") or {}).get("text")
    if not isinstance(source, dict) or source.get("_target_") != "skrr.experiments.toyworld.captions.prompts":
        return None
    from skrr.experiments.toyworld.captions import prompt_scenes
    from skrr.experiments.toyworld.scenes import render

    scenes = prompt_scenes(source.get("task_mix", "geneval"), int(source.get("n", 96)), int(source.get("seed", 0)))
    index = image_index(image_folder(row))
    out = []
    for p in prompts:
        scene, meta = scenes[index[p.key][0]]
        if meta["prompt"] != p.text:  # the config does not describe these images: draw no true column
            return None
        out.append(render(scene))
    return out


def level_columns(rows: list[dict], level: float) -> list[Column]:
    """Dense, then each Table 1 method's row asked for `level` (else its nearest achieved sparsity)."""
    cols = []
    for method in GRID_METHODS:
        cands = [r for r in rows if r["method"] == method and r["label"] == _plain(method) and not r.get("seed_offset")]
        if not cands:
            continue
        if method == DENSE:
            best = cands[0]
        else:
            best = min(cands, key=lambda r: (abs(r["target"] - level) > 1e-6, abs(r["sparsity"] - level)))
        cols.append(Column(_title(best), best))
    return cols


def method_columns(rows: list[dict], method: str) -> list[Column]:
    """Dense, then `method` (its plain label, no ablation settings) at each achieved sparsity."""
    dense = [r for r in rows if is_dense(r, noise_floor=False)]
    own = sorted((r for r in rows if r["method"] == method and r["label"] == _plain(method) and r["sparsity"] > 0),
                 key=lambda r: r["sparsity"])
    return [Column(_title(r), r) for r in dense[:1] + own]


def _plain(method: str) -> str:

    return METHOD_NAMES.get(method, method)


def _title(row: dict) -> str:
    return f"{row['label']}\n{row['sparsity']:.1%} sparse"


def _cell(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    small = max(im.size) <= 64  # pixel art (the toy world): keep its edges
    return np.asarray(im.convert("RGB").resize((CELL_PX, CELL_PX), Image.NEAREST if small else Image.BICUBIC))


def draw(columns: list[Column], prompts: list[Prompt], path: Path, title: str, truth=None) -> list[list]:
    """Draw the grid to `path`; returns its cells as table rows [prompt, task, (title, image, caption)...]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = ([Column("True scene\nrender", None)] if truth is not None else []) + columns
    scores = [verdicts(c.row) if c.row is not None else ({}, {}) for c in cols]
    indexes = [image_index(image_folder(c.row)) if c.row is not None else {} for c in cols]
    fig, axes = plt.subplots(len(prompts), len(cols) + 1, squeeze=False,
                             figsize=(2.6 + 1.55 * len(cols), 0.35 + 1.85 * len(prompts)), dpi=110,
                             gridspec_kw={"width_ratios": [1.7] + [1] * len(cols)})
    table = []
    for i, p in enumerate(prompts):
        label = axes[i][0]
        label.axis("off")
        task = f"[{TASK_NAMES.get(p.task, p.task)}]\n" if p.task else ""
        label.text(0.98, 0.5, task + "\n".join(textwrap.wrap(p.text, 26)), ha="right", va="center", fontsize=8.5,
                   transform=label.transAxes)
        cells = []
        for j, c in enumerate(cols):
            ax = axes[i][j + 1]
            ax.set_xticks([])
            ax.set_yticks([])
            if c.row is None:
                image, text = truth[i], "a scene it describes"
            else:
                found = indexes[j].get(p.key)
                image = np.asarray(Image.open(found[1]).convert("RGB")) if found else None
                text = caption(c.row, p.key, scores[j]) if found else "image missing"
            if image is not None:
                ax.imshow(_cell(image))
            ax.set_xlabel(text, fontsize=8, labelpad=2,
                          color="#1b7a34" if "✓" in text else "#b71c1c" if "✗" in text else "black")
            if i == 0:
                ax.set_title(c.title, fontsize=8.5)
            cells.append((c.title.replace("\n", ", "), image, text))
        table.append([p.text, p.task or "", *cells])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98), h_pad=0.6, w_pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return table


def grids(rows: list[dict], out: Path, title: str, method: str = "skrr", n: int = 6, seed: int = 0) -> dict:
    """Write grid_<level>.png per paper level and grid.png for `method`; returns {name: (path, table rows)}.
    `rows` are labelled (skrr.experiments.report.tables.latest). Nothing is drawn without a dense row and images."""
    dense = [r for r in rows if is_dense(r, noise_floor=False)]
    if not dense or not image_index(image_folder(dense[0])):
        return {}
    prompts = choose_prompts(dense[0], n, seed)
    truth = true_scenes(dense[0], prompts)
    rule = f"prompts: seed {seed}, one per GenEval task in turn" if prompts[0].task else f"prompts: seed {seed}"
    written = {}
    if any(r["sparsity"] > 0 for r in rows):
        for level in LEVELS:
            cols = level_columns(rows, level)
            if len(cols) > 1:
                name = f"grid_{round(100 * level)}"
                path = out / f"{name}.png"
                written[name] = (path, draw(cols, prompts, path, f"{title} at {level:.0%} sparsity ({rule})", truth))
        cols = method_columns(rows, method)
        if len(cols) > 1:
            written["grid"] = (out / "grid.png", draw(cols, prompts, out / "grid.png",
                                                      f"{title}: {_plain(method)} across sparsities ({rule})", truth))
    return written
