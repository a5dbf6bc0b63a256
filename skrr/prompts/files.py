"""Prompt files: plain text (one prompt per line) or JSONL (one field per line). Calibration reads
them here; the evaluation layer's prompt sets read them through this module too."""
from __future__ import annotations

import json
from pathlib import Path

from skrr.errors import InputError, MissingFile, UnknownName


def load_prompt_file(path: str, column: str = "prompt") -> list[str]:
    """Text file (one prompt per line) or JSONL (a `column` field per line, default "prompt")."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"prompt file {path} not found")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for i, line in enumerate(lines):
            row = json.loads(line)
            if column not in row:
                raise UnknownName(f"{path}:{i + 1} has no {column!r} field (has {sorted(row)}); write one "
                               f"{{{column!r}: ...}} per line or name the field (calibration.column)")
            prompts.append(row[column])
    else:
        prompts = lines
    return check_nonempty(prompts, path)


def check_nonempty(items: list, source) -> list:
    if not items:
        raise InputError(f"prompt set {source} is empty; point it at a file with at least one prompt")
    return items
