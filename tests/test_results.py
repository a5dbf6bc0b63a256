"""The results store never loses a row: a torn last line is ended before the next append, and a
line that is not a row is reported with its line number by every reader (skrr-report included)."""
import json
import subprocess
import sys

import pytest

from skrr.experiments.runner.results import append_result, load_results, read_results


def row(key: str, **extra) -> dict:
    return {"run_key": key, "method": "dense", **extra}


def test_append_after_a_torn_last_line_keeps_both_rows(tmp_path):
    store = tmp_path / "t.jsonl"
    store.write_text(json.dumps(row("a")))  # a complete row whose newline never made it to disk
    assert append_result(store, row("b"))
    assert [r["run_key"] for r in load_results(store)] == ["a", "b"]
    assert store.read_text().endswith("\n") and store.read_text().count("\n") == 2


def test_a_half_written_line_is_reported_and_the_next_row_survives(tmp_path, capsys):
    store = tmp_path / "t.jsonl"
    append_result(store, row("a"))
    with open(store, "a") as f:
        f.write('{"run_key": "half", "metr')  # a write cut short (disk full)
    assert append_result(store, row("b"))
    found = read_results(store)
    assert [r["run_key"] for r in found.rows] == ["a", "b"]
    assert [n for n, _ in found.malformed] == [2] and "not JSON" in found.malformed[0][1]
    assert "line 2: not JSON" in capsys.readouterr().err  # the append's own read said so as well
    assert not append_result(store, row("b"))  # still no duplicates


def test_lines_that_are_not_rows_are_named(tmp_path):
    store = tmp_path / "t.jsonl"
    store.write_text("\n".join([json.dumps(row("a")), "garbage", "[1, 2]", "", json.dumps({"x": 1}),
                                json.dumps(row("b"))]) + "\n")
    found = read_results(store)
    assert [r["run_key"] for r in found.rows] == ["a", "b"]
    assert [n for n, _ in found.malformed] == [2, 3, 5]
    text = found.summary()
    assert text.startswith(f"{store}: 2 rows, 3 malformed lines (line 2: not JSON") and "line 5: not a result row" in text


def report(*args):
    return subprocess.run([sys.executable, "-m", "skrr.experiments.cli.report", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_skrr_report_says_what_it_found(tmp_path):
    from test_report import row as report_row

    store = tmp_path / "results" / "t.jsonl"
    store.parent.mkdir()
    store.write_text("garbage\n")
    p = report(store)  # nothing but a bad line: says so, instead of "holds no results"
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "0 rows, 1 malformed line (line 1: not JSON" in p.stderr and "Traceback" not in p.stderr

    for key, target in (("d", 0.0), ("s", 0.3)):
        with open(store, "a") as f:
            f.write(json.dumps(report_row("dense" if key == "d" else "shortgpt", target, target, 0.5, key=key)))
        append_result(store, report_row("skrr", target, target, 0.7, key=f"skrr{key}"))  # after a torn line
    p = report(store, "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr
    assert "4 rows, 1 malformed line (line 1: not JSON" in p.stdout
    table = (tmp_path / "rep" / "table1.md").read_text()
    assert all(name in table for name in ("| Dense |", "| ShortGPT |", "| Skrr |"))


@pytest.mark.parametrize("bad", [b"\xff\xfe not utf-8\n", b"{\"run_key\": 1,,}\n"])
def test_undecodable_lines_are_malformed_not_fatal(tmp_path, bad):
    store = tmp_path / "t.jsonl"
    store.write_bytes(bad + json.dumps(row("a")).encode() + b"\n")
    found = read_results(store)
    assert [r["run_key"] for r in found.rows] == ["a"] and [n for n, _ in found.malformed] == [1]
