"""GenEval 2 as a metric: images + their GenEval 2 rows -> a judge's soft answers -> Soft-TIFA GM/AM."""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.utilities import dim_zero_cat

from skrr.errors import ConfigError, InputError
from skrr.eval.geneval2.data import SKILLS, check_row
from skrr.eval.geneval2.judge import QWEN3_VL
from skrr.eval.geneval2.scoring import soft_tifa, soft_tifa_intervals, soft_tifa_values
from skrr.eval.images import to_pil_list
from skrr.eval.metrics import Metric


def _cat(state, dtype) -> torch.Tensor:
    return dim_zero_cat(state) if len(state) else torch.zeros(0, dtype=dtype)


class GenEval2(Metric):
    """update(images, rows) with one GenEval 2 row (prompt, atom_count, vqa_list, skills) per image;
    compute() -> {"overall": Soft-TIFA GM, "am": Soft-TIFA AM, "<skill>": the mean soft answer of the
    skill's questions, "atoms_<k>": the GM over prompts of k atoms}, all in [0, 1] (GenEval 2 prints
    them x100).

    `judge`: a Hugging Face id or folder of a Qwen3-VL (default GenEval 2's, loaded with its fast image
    processor in `dtype`, "auto" as GenEval 2 does) or any callable `judge(image, row) -> [score per
    question]` (the toy world's). `batch_questions`: ask an image's questions in one batch.
    `resample`: the bootstrap unit, "prompt" or "image" (skrr.eval.geneval.evaluate.GenEval's).

    States, all "cat": `item_scores` (each image's GM, the per-image score the report pairs),
    `item_am`, `item_atoms`, `item_questions` (how many questions the image had), and per question
    in order `question_scores` and `question_skills` (an index into SKILLS)."""
    prompt_set = "geneval2"
    higher_is_better = True

    def __init__(self, judge=QWEN3_VL, device: str | torch.device = "cpu", dtype: str = "auto", tiny: bool = False,
                 batch_questions: bool = True, batch_size: int = 4, resample: str = "prompt"):
        super().__init__()
        if resample not in ("prompt", "image"):
            raise ConfigError("resample", f"must be 'prompt' or 'image', got {resample!r}")
        if isinstance(judge, str):
            from skrr.eval.geneval2.judge import QwenJudge

            judge = QwenJudge(judge, device=device, dtype=dtype, tiny=tiny, batch_questions=batch_questions)
        if not callable(judge):
            raise ConfigError("judge", f"must be a model id or a callable judge(image, row), got {type(judge).__name__}")
        self.judge, self.batch_size, self.resample = judge, batch_size, resample
        for name in ("item_am", "item_atoms", "item_questions", "question_scores", "question_skills"):
            self.add_state(name, [], dist_reduce_fx="cat")

    @classmethod
    def validate(cls, cfg) -> None:
        if cfg.get("resample", "prompt") not in ("prompt", "image"):
            raise ConfigError("resample", f"must be 'prompt' or 'image', got {cfg.get('resample')!r}")

    def update(self, images, rows: list[dict], dense=None) -> None:
        pils = to_pil_list(images)
        if len(pils) != len(rows):
            raise InputError(f"GenEval 2 got {len(pils)} images but {len(rows)} rows; pass one row per image")
        gm, am, atoms, counts, q_scores, q_skills = [], [], [], [], [], []
        for image, row in zip(pils, rows):
            check_row(row, f"GenEval 2 row {row.get('prompt', '?')!r}" if isinstance(row, dict) else "GenEval 2 row")
            scores = [float(s) for s in self.judge(image, row)]
            if len(scores) != len(row["vqa_list"]):
                raise InputError(f"the judge gave {len(scores)} scores for {len(row['vqa_list'])} questions")
            g, a = soft_tifa(scores)  # refuses NaN, inf and negative scores
            gm.append(g), am.append(a), atoms.append(row["atom_count"]), counts.append(len(scores))
            q_scores += scores
            q_skills += [SKILLS.index(s) for s in row["skills"]]
        self.item_scores.append(torch.tensor(gm, dtype=torch.float64))
        self.item_am.append(torch.tensor(am, dtype=torch.float64))
        self.item_atoms.append(torch.tensor(atoms, dtype=torch.long))
        self.item_questions.append(torch.tensor(counts, dtype=torch.long))
        self.question_scores.append(torch.tensor(q_scores, dtype=torch.float64))
        self.question_skills.append(torch.tensor(q_skills, dtype=torch.long))

    def _arrays(self) -> dict[str, np.ndarray]:
        counts = _cat(self.item_questions, torch.long).numpy()
        return {"gm": self.item_tensor().numpy(), "am": _cat(self.item_am, torch.float64).numpy(),
                "atoms": _cat(self.item_atoms, torch.long).numpy(),
                "question_scores": _cat(self.question_scores, torch.float64).numpy(),
                "question_skills": _cat(self.question_skills, torch.long).numpy(),
                "question_item": np.repeat(np.arange(len(counts)), counts)}

    def compute(self) -> dict[str, float]:
        a = self._arrays()
        if not len(a["gm"]):
            raise InputError("GenEval 2 has scored no images")
        return soft_tifa_values(a["gm"], a["am"], a["atoms"], a["question_scores"], a["question_skills"],
                                a["question_item"])

    def intervals(self, clusters, resamples: int | None = None, seed: int = 0) -> dict:
        """Every number of compute() with its 95% bootstrap interval; `clusters`: each image's
        resampling unit (its prompt, or itself), as skrr.eval.per_item gives them."""
        from skrr.eval.intervals import RESAMPLES

        a = self._arrays()
        return soft_tifa_intervals(a["gm"], a["am"], a["atoms"], a["question_scores"], a["question_skills"],
                                   a["question_item"], np.asarray(clusters), resamples or RESAMPLES, seed)
