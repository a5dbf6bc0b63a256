"""How long a console script takes to refuse a typo, and to print --help, against a bare interpreter.

    .venv/bin/python benchmarks/refusal.py              # 5 runs each, the median (about a minute)
    .venv/bin/python benchmarks/refusal.py --runs 9

Each command runs as the user types it (the installed console script, a fresh process), in a scratch
directory; the time is wall clock from start to exit, printed in seconds and as a ratio to
`python -c pass` (the interpreter's own start-up) measured the same way in the same session, so a
busy machine shows as a large baseline. Aim (issue 32): under 2 s on an idle machine. Each refusal
must exit 2 with one `error:` line; a command that does not is reported and fails the benchmark.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {  # label -> (argv, expected exit status)
    "python -c pass": ([sys.executable, "-c", "pass"], 0),
    "skrr-prune +method.beam_widht=3": ([str(BIN / "skrr-prune"), "model=tiny_pixart", "method=skrr",
                                         "+method.beam_widht=3"], 2),
    "skrr-prune method.beam_widht=3": ([str(BIN / "skrr-prune"), "model=tiny_pixart", "method=skrr",
                                        "method.beam_widht=3"], 2),
    "skrr-prune method=skrrr": ([str(BIN / "skrr-prune"), "method=skrrr"], 2),
    "skrr-run method.sparsity=1.0": ([str(BIN / "skrr-run"), "model=tiny_pixart", "method.sparsity=1.0"], 2),
    "skrr-prune --help": ([str(BIN / "skrr-prune"), "--help"], 0),
    "skrr-run --help": ([str(BIN / "skrr-run"), "--help"], 0),
}


def timed(argv: list[str], status: int, cwd: str) -> float:
    start = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    if p.returncode != status or (status == 2 and (len(errors) != 1 or p.stdout)):
        sys.exit(f"{' '.join(argv)}: exit {p.returncode} (want {status}), stderr:\n{p.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (the median is shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        for argv, status in COMMANDS.values():  # warm the file cache once: a cold disk is not what is measured
            timed(argv, status, cwd)
        times = {label: [] for label in COMMANDS}
        for _ in range(args.runs):  # interleaved: load on the machine affects every command alike
            for label, (argv, status) in COMMANDS.items():
                times[label].append(timed(argv, status, cwd))
    base = statistics.median(times["python -c pass"])
    print(f"{'command':34s} {'median s':>9s} {'x python':>9s}   (cpu load {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    for label, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{label:34s} {median:9.2f} {median / base:9.1f}")


if __name__ == "__main__":
    main()
