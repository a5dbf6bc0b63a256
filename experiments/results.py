"""Results store: one JSON line per finished run in `<root>/results/<experiment>.jsonl`.

It is the source of truth for reports. Appends hold an exclusive fcntl lock, so parallel sweep
jobs (joblib, SLURM array on a shared filesystem) never interleave lines, and a run whose
`run_key` is already stored is not appended again (a re-run sweep adds no duplicates).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path


def results_path(root: str | os.PathLike, experiment: str) -> Path:
    return Path(root) / "results" / f"{experiment}.jsonl"


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Exclusive lock on `<path>.lock` (created if missing), released on exit."""
    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_results(path: str | os.PathLike) -> list[dict]:
    """Every row of a results file; a torn last line (a crash mid-write elsewhere) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}; run a sweep first (skrr-run -m experiment=...)")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def stored_keys(path: str | os.PathLike) -> set[str]:
    return {r.get("run_key") for r in load_results(path)} if Path(path).is_file() else set()


def append_result(path: str | os.PathLike, row: dict) -> bool:
    """Append `row` unless a row with its run_key is stored. Returns whether it was appended."""
    if "run_key" not in row:
        raise ValueError("a result row needs a run_key (the hash of the inputs that determine it)")
    path = Path(path)
    line = json.dumps(row, default=str) + "\n"
    with file_lock(path):
        if row["run_key"] in stored_keys(path):
            return False
        with open(path, "a") as f:  # one write of one line under the lock
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    return True
