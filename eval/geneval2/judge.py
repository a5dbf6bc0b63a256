"""The VQA judge of GenEval 2: a Qwen3-VL (transformers) asked each question about one image.

For each question, one user turn holding the image and "<question> Answer in one word.", the
generation prompt added; the judge's first generated token's probabilities (greedy generate,
max_new_tokens=1, its scores softmaxed in float32, as GenEval 2 reads them) give the soft score:
the sum over the answer's variants of each variant's first-token probability. A judge is any
callable `judge(image, row) -> [soft score per question of row["vqa_list"]]` (the toy world's
reads the scene); this is the model one.
"""
from __future__ import annotations

import torch

from skrr.eval.geneval2.data import SUFFIX, answer_variants, is_count
from skrr.eval.geneval2.scoring import first_token_ids, soft_score

QWEN3_VL = "Qwen/Qwen3-VL-8B-Instruct"


class QwenJudge:
    """`batch_questions`: ask all of one image's questions in one left-padded batch (GenEval 2 asks
    one per call; tests/test_geneval2.py and test_geneval2_parity.py check both give the same
    scores, and GenEval 2's own, within 1e-5 relative in float32)."""

    def __init__(self, model_name: str = QWEN3_VL, device: str | torch.device = "cpu", dtype: str = "auto",
                 tiny: bool = False, batch_questions: bool = True, model=None, processor=None):
        if model is None:
            if tiny:
                from skrr.eval.geneval2.tiny import tiny_processor, tiny_qwen3vl

                processor = tiny_processor()
                model = tiny_qwen3vl(processor)
            else:
                from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

                # the fast (torchvision) image processor: the slow PIL one resizes differently
                processor = AutoProcessor.from_pretrained(model_name, backend="torchvision")
                model = Qwen3VLForConditionalGeneration.from_pretrained(model_name, dtype=dtype)
        self.model, self.processor = model.to(device).eval(), processor
        self.processor.tokenizer.padding_side = "left"  # a batch's last position is every question's last token
        self.batch_questions = batch_questions
        self._ids: dict[tuple[str, str], list[int]] = {}

    def variant_ids(self, question: str, answer: str) -> list[int]:
        key = (is_count(question), answer)
        if key not in self._ids:
            self._ids[key] = first_token_ids(self.processor.tokenizer, answer_variants(question, answer))
        return self._ids[key]

    @torch.no_grad()
    def first_token_probs(self, image, texts: list[str]) -> torch.Tensor:
        """(len(texts), vocab) float32: softmax of the first generated token's scores, one user turn per text."""
        conversations = [[{"role": "user", "content": [{"type": "image", "image": image},
                                                       {"type": "text", "text": t}]}] for t in texts]
        inputs = self.processor.apply_chat_template(conversations, tokenize=True, add_generation_prompt=True,
                                                    return_dict=True, return_tensors="pt",
                                                    processor_kwargs={"padding": True})
        inputs = inputs.to(self.model.device)
        out = self.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                  return_dict_in_generate=True)
        return torch.softmax(out.scores[0].float(), dim=-1)

    def __call__(self, image, row: dict) -> list[float]:
        image = image.convert("RGB")
        texts = [f"{q}{SUFFIX}" for q, _ in row["vqa_list"]]
        if self.batch_questions:
            probs = self.first_token_probs(image, texts)
        else:
            probs = torch.cat([self.first_token_probs(image, [t]) for t in texts])
        return [soft_score(p, self.variant_ids(q, a)) for p, (q, a) in zip(probs, row["vqa_list"])]
