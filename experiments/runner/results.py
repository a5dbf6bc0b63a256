"""Results store: one JSON line per finished run in `<root>/results/<experiment>.jsonl`.

It is the source of truth for reports. Appends hold an exclusive fcntl lock, so parallel sweep
jobs (joblib, SLURM array on a shared filesystem) never interleave lines, and a run whose
`run_key` is already stored is not appended again (a re-run sweep adds no duplicates).
A file left without its final newline (a disk-full write, a copy cut short) is ended before
the next row goes in, so that row never merges with the torn line. Every reader goes through
`read_results`, which returns the malformed lines with their line numbers beside the rows.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from skrr.errors import InputError, MissingFile, UnknownName


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


@dataclass
class Results:
    """What a results file holds: its rows, and the lines that are not rows (line number, why)."""
    path: Path
    rows: list[dict] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)

    def summary(self, shown: int = 3) -> str:
        """e.g. `runs/results/t.jsonl: 12 rows, 1 malformed line (line 7: not JSON: Expecting value)`."""
        text = f"{self.path}: {_count(len(self.rows), 'row')}"
        if self.malformed:
            lines = "; ".join(f"line {n}: {why}" for n, why in self.malformed[:shown])
            more = f"; {len(self.malformed) - shown} more" if len(self.malformed) > shown else ""
            text += f", {_count(len(self.malformed), 'malformed line')} ({lines}{more})"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def read_results(path: str | os.PathLike) -> Results:
    """The one reader of a results file: rows in file order, and every line that is not a row."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no results file at {path}; run a sweep first (skrr-run -m experiment=...)")
    found = Results(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                found.malformed.append((number, f"not JSON ({e.msg} at column {e.colno}): {_clip(line)}"))
                continue
            if not isinstance(row, dict) or "run_key" not in row:
                found.malformed.append((number, f"not a result row (no run_key): {_clip(line)}"))
                continue
            found.rows.append(row)
    return found


def _clip(line: str, width: int = 60) -> str:
    return repr(line if len(line) <= width else line[:width] + "...")


def load_results(path: str | os.PathLike) -> list[dict]:
    """Every row of a results file; malformed lines are named on stderr (never dropped in silence)."""
    found = read_results(path)
    if found.malformed:
        print(f"warning: {found.summary()}; those lines are not rows", file=sys.stderr)
    return found.rows


def stored_keys(path: str | os.PathLike) -> set[str]:
    return {r["run_key"] for r in load_results(path)} if Path(path).is_file() else set()


def append_result(path: str | os.PathLike, row: dict) -> bool:
    """Append `row` unless a row with its run_key is stored. Returns whether it was appended."""
    if "run_key" not in row:
        raise InputError("a result row needs a run_key (the hash of the inputs that determine it)")
    path = Path(path)
    data = (json.dumps(row, default=str) + "\n").encode()
    with file_lock(path):
        if row["run_key"] in stored_keys(path):
            return False
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end the torn line first: the new row starts a line of its own
            view = memoryview(data)
            while view:  # one write; the loop only covers a short write (a signal, a full disk)
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    return True


def find_row(path: str | os.PathLike, run_key: str) -> dict:
    """The stored row with this run_key (FileNotFoundError / KeyError with the path if there is none)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no results file at {path}")
    for row in load_results(path):
        if row.get("run_key") == run_key:
            return row
    raise UnknownName(f"no row with run_key {run_key!r} in {path}")


def update_row(path: str | os.PathLike, run_key: str, change) -> dict:
    """Apply `change(row)` to the stored row with this run_key, under the store's lock, and rewrite the
    file atomically (a reader sees the old file or the new one, never half of it). Returns the row."""
    path = Path(path)
    find_row(path, run_key)  # fail before taking the lock
    with file_lock(path):
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if line.strip() and json.loads(line).get("run_key") == run_key:
                row = json.loads(line)
                change(row)
                lines[n] = json.dumps(row, default=str)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    return row
