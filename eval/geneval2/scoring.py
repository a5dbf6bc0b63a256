"""Soft-TIFA's arithmetic: first-token probabilities -> soft answers -> per-prompt AM/GM -> summaries.

Pure functions of numbers (no model), so each step is checked on hand-made probabilities:

    ids = first_token_ids(tokenizer, answer_variants(q, a))    # one id per variant, duplicates kept
    s = soft_score(probs, ids)                                  # sum of those ids' probabilities
    gm, am = soft_tifa(scores_of_one_prompt)
    summary = soft_tifa_intervals(gm, am, atoms, q_scores, q_skills, q_item, clusters)
"""
from __future__ import annotations

import numpy as np
import torch

from skrr.errors import InputError
from skrr.eval.geneval2.data import SKILLS
from skrr.eval.intervals import RESAMPLES, Interval, bootstrap_mean


def first_token_ids(tokenizer, variants: list[str]) -> list[int]:
    """Each variant's first token id (as GenEval 2 does: a longer answer counts by its first token
    only, and two variants with the same first token both count)."""
    ids = []
    for v in variants:
        tokens = tokenizer.encode(v, add_special_tokens=False)
        if not tokens:
            raise InputError(f"answer variant {v!r} tokenizes to nothing")
        ids.append(int(tokens[0]))
    return ids


def soft_score(probs: torch.Tensor, ids: list[int]) -> float:
    """Sum of probs[id] over ids (a repeated id adds its probability again), in float64."""
    return float(sum(float(probs[i]) for i in ids))


def soft_tifa(scores) -> tuple[float, float]:
    """(geometric mean, arithmetic mean) of one prompt's soft scores; a zero makes the GM 0."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or not np.isfinite(s).all() or (s < 0).any():
        raise InputError(f"Soft-TIFA needs finite non-negative scores, got {s.tolist()}")
    with np.errstate(divide="ignore"):
        gm = float(np.exp(np.log(s).mean()))
    return gm, float(s.mean())


def soft_tifa_intervals(gm, am, atoms, question_scores, question_skills, question_item, clusters,
                        resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Interval]:
    """GenEval 2's numbers with 95% bootstrap intervals, prompts (`clusters`, one label per image)
    resampled: `overall` (Soft-TIFA GM: mean over images of each image's GM), `am` (the AM's),
    per skill the mean over every question of that skill (GenEval 2 pools questions across prompts,
    so an image counts by its number of such questions), and `atoms_<k>` the GM over the images of
    prompts with k atoms. Inputs are per image (gm, am, atoms, clusters) or per question (scores,
    skill index into SKILLS, and the index of its image)."""
    gm, am, atoms, clusters = (np.asarray(x) for x in (gm, am, atoms, clusters))
    q_scores, q_skills, q_item = (np.asarray(x) for x in (question_scores, question_skills, question_item))
    out = {"overall": bootstrap_mean(gm, clusters, resamples=resamples, seed=seed),
           "am": bootstrap_mean(am, clusters, resamples=resamples, seed=seed)}
    for i, skill in enumerate(SKILLS):
        mask = q_skills == i
        if mask.any():
            out[skill] = bootstrap_mean(q_scores[mask], clusters[q_item[mask]], resamples=resamples, seed=seed)
    for k in sorted(set(atoms.tolist())):
        mask = atoms == k
        out[f"atoms_{k}"] = bootstrap_mean(gm[mask], clusters[mask], resamples=resamples, seed=seed)
    return out


def soft_tifa_values(gm, am, atoms, question_scores, question_skills, question_item) -> dict[str, float]:
    """The same numbers as soft_tifa_intervals, without intervals (what compute() returns)."""
    gm, am, atoms = (np.asarray(x, dtype=np.float64) for x in (gm, am, atoms))
    q_scores, q_skills = np.asarray(question_scores, dtype=np.float64), np.asarray(question_skills)
    out = {"overall": float(gm.mean()), "am": float(am.mean())}
    for i, skill in enumerate(SKILLS):
        if (q_skills == i).any():
            out[skill] = float(q_scores[q_skills == i].mean())
    for k in sorted(set(atoms.astype(int).tolist())):
        out[f"atoms_{k}"] = float(gm[atoms == k].mean())
    return out
