"""What a toy caption states, word by word: the targets that teach the v2 text encoder the scene.

Every word that belongs to an object mention ("a red square at the top left", "three rings")
gets that object's stated shape, colour, count, row, column and relation to the other object
(the second object of "a ring left of a square" is *right of* the first); every word gets the
number of objects in the scene. A denoiser reading these token states finds each object's
attributes at every word of its mention, which is what binds colours to shapes and relations
to objects. Parsed from the caption grammar of `captions.py`; unstated attributes are class 0.
"""
from __future__ import annotations

from skrr.errors import InputError

from .captions import COL_WORDS, NUMBERS, RELATIONS, ROW_WORDS
from .scenes import COLORS, GRID, PLURALS, SHAPES

INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_SINGULAR = {p: s for s, p in PLURALS.items()}
_COUNT_WORDS = {w: n for n, w in NUMBERS.items()}
IGNORE = -100
# head name -> number of classes (0 = unstated where that applies)
HEADS = {"shape": len(SHAPES), "color": len(COLORS) + 1, "count": 4, "relation": len(RELATIONS) + 1,
         "row": GRID + 1, "col": GRID + 1, "objects": 4}


def _relation_at(words: list[str], i: int) -> tuple[str, int] | None:
    for rel in RELATIONS:
        parts = rel.split()
        if words[i:i + len(parts)] == parts:
            return rel, len(parts)
    return None


def caption_targets(caption: str) -> dict[str, list[int]]:
    """Per word of `caption` (split on spaces), one class index per head (IGNORE off-mention)."""
    words = caption.split()
    out = {head: [IGNORE] * len(words) for head in HEADS}
    mentions = []  # (start, end exclusive, attributes)
    for i, w in enumerate(words):
        if w not in SHAPES and w not in _SINGULAR:
            continue
        attrs = {"shape": SHAPES.index(_SINGULAR.get(w, w)), "color": 0, "count": 0, "relation": 0, "row": 0, "col": 0}
        start, end = i, i + 1
        if start > 0 and words[start - 1] in COLORS:
            start -= 1
            attrs["color"] = COLORS.index(words[start]) + 1
        if start > 0 and words[start - 1] in _COUNT_WORDS:
            start -= 1
            attrs["count"] = _COUNT_WORDS[words[start]] - 1
        elif start > 0 and words[start - 1] in ("a", "an"):
            start -= 1
        if words[end:end + 2] == ["at", "the"] and end + 3 < len(words):
            attrs["row"] = ROW_WORDS.index(words[end + 2]) + 1
            col = " ".join(words[end + 3:end + 5])
            if col not in COL_WORDS:
                col = words[end + 3]
            attrs["col"] = COL_WORDS.index(col) + 1
            end += 3 + len(col.split())
        mentions.append([start, end, attrs])
    for (_, e0, a0), (s1, _, a1) in zip(mentions, mentions[1:]):
        found = _relation_at(words, e0)
        if found and e0 + found[1] == s1:  # "<mention> left of <mention>"
            a0["relation"] = RELATIONS.index(found[0]) + 1
            a1["relation"] = RELATIONS.index(INVERSE[found[0]]) + 1
    n_objects = sum(a["count"] + 1 for _, _, a in mentions)
    if not 1 <= n_objects <= 4:
        raise InputError(f"caption states {n_objects} objects (the toy world draws 1-4): {caption!r}")
    for start, end, attrs in mentions:
        if attrs["relation"]:  # the relation words belong to the subject
            end += len(RELATIONS[attrs["relation"] - 1].split()) if _relation_at(words, end) else 0
        for head, value in attrs.items():
            out[head][start:end] = [value] * (end - start)
    out["objects"] = [n_objects - 1] * len(words)
    return out
