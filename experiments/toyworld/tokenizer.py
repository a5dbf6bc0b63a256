"""A T5 tokenizer over the toy caption language, built offline.

A Unigram model whose pieces are the grammar's whole words ("▁circle"), so every caption
word is one token. It is T5's own tokenizer class and file format, so it saves and loads
with `from_pretrained` like the real one (transformers 5 rebuilds T5 tokenizers as Unigram).
"""
from __future__ import annotations

from transformers import T5TokenizerFast

from .captions import vocabulary

MASK = "<extra_id_0>"  # the sentinel the encoder's masked-word objective uses


def build_tokenizer() -> T5TokenizerFast:
    """`<pad>`=0, `</s>`=1, `<unk>`=2 as in T5, then the caption words, then the sentinel."""
    scores = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    scores += [("\u2581" + w, -1.0) for w in vocabulary()]
    scores += [(MASK, 0.0)]
    return T5TokenizerFast(vocab=scores, extra_ids=0, additional_special_tokens=[MASK])
