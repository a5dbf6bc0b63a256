"""A word-level T5 tokenizer over the toy caption language, built offline."""
from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import T5TokenizerFast

from .captions import vocabulary

SPECIALS = ("<pad>", "</s>", "<unk>")
MASK = "<extra_id_0>"  # the sentinel the encoder's masked-word objective uses


def build_tokenizer() -> T5TokenizerFast:
    """`<pad>`=0, `</s>`=1, `<unk>`=2 as in T5, then the sentinel, then the caption words."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, MASK, *vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, additional_special_tokens=[MASK])
