"""GenEval 2's prompt file (`geneval2_data.jsonl`, given by the user) and each answer's variants.

A row: `prompt`, `atom_count`, `vqa_list` ([question, answer] pairs) and `skills` (one per
question). The file is checked whole before anything loads; a bad row fails naming its line.
"""
from __future__ import annotations

import json
from pathlib import Path

from skrr.errors import InputError, MissingFile

SKILLS = ("object", "attribute", "count", "position", "verb")
NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                "eight": "8", "nine": "9", "ten": "10"}
SUFFIX = " Answer in one word."


def is_count(question: str) -> bool:
    """GenEval 2 asks its counts as "How many ..." and scores their answers as numbers."""
    return question.startswith("How many")


def answer_variants(question: str, answer: str) -> list[str]:
    """The strings whose first tokens' probabilities sum to a question's soft score, in GenEval 2's
    order, duplicates kept: a count's number word (as given, capitalised, each with and without a
    leading space) and its digit (with and without a space); otherwise the answer capitalised and
    lower-case, each with and without a space (GenEval 2 uses Yes/yes/ yes/ Yes for every non-count
    question; its file's answers are all "Yes", for which this is the same list)."""
    if is_count(question):
        if answer not in NUMBER_WORDS:
            raise InputError(f"count answer {answer!r} to {question!r} is not one of {list(NUMBER_WORDS)}")
        digit = NUMBER_WORDS[answer]
        return [answer, answer.capitalize(), " " + answer, " " + answer.capitalize(), digit, " " + digit]
    cap, low = answer.capitalize(), answer.lower()
    return [cap, low, " " + low, " " + cap]


def check_row(row, where: str) -> dict:
    """One row of the file, checked; returns it. `where` names it in the error (path:line)."""
    if not isinstance(row, dict):
        raise InputError(f"{where} is not a JSON object")
    missing = [k for k in ("prompt", "atom_count", "vqa_list", "skills") if k not in row]
    if missing:
        raise InputError(f"{where} lacks {missing}; a GenEval 2 row has prompt, atom_count, vqa_list, skills")
    vqa, skills = row["vqa_list"], row["skills"]
    if not isinstance(row["prompt"], str) or not row["prompt"].strip():
        raise InputError(f"{where}: prompt must be a non-empty string")
    if not isinstance(row["atom_count"], int) or isinstance(row["atom_count"], bool) or row["atom_count"] < 1:
        raise InputError(f"{where}: atom_count must be a positive integer, got {row['atom_count']!r}")
    if not isinstance(vqa, list) or not vqa or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in vqa):
        raise InputError(f"{where}: vqa_list must be a non-empty list of [question, answer] string pairs")
    if not isinstance(skills, list) or len(skills) != len(vqa):
        raise InputError(f"{where}: skills must list one skill per question ({len(vqa)})")
    unknown = sorted({s for s in skills if s not in SKILLS}, key=str)
    if unknown:
        raise InputError(f"{where}: unknown skills {unknown}; GenEval 2's are {list(SKILLS)}")
    for question, answer in vqa:
        try:
            answer_variants(question, answer)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
    return row


def load_geneval2(path) -> list[dict]:
    """The rows of a geneval2_data.jsonl, each checked (MissingFile / InputError naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"GenEval 2 prompts {path} not found; pass eval.prompts.geneval2_metadata=PATH to "
                          "geneval2_data.jsonl from github.com/facebookresearch/GenEval2 (CC BY-NC 4.0, not shipped)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n} is not JSON ({e.msg}); expected one GenEval 2 row per line") from None
        rows.append(check_row(row, f"{path}:{n}"))
    if not rows:
        raise InputError(f"{path} holds no GenEval 2 rows")
    return rows
