"""How each pipeline feeds its text encoder, mirrored from its `encode_prompt` (diffusers 0.42).

A feeding turns prompts into encoder input and says which encoder outputs reach the denoiser:
`tokenize` returns input_ids, the attention_mask passed to the encoder (None where the pipeline
passes none) and `attend`, the tokens whose embeddings the denoiser receives; `encode` returns
the hidden state the pipeline reads, per token. Slicing a pipeline does after the encoder (Sana's
select_index, Qwen-Image's dropped template prefix) only changes which tokens reach the denoiser,
so it becomes `attend`: the projections are per token, so the discrepancy over attended tokens is
the one over what the denoiser gets.
"""
from __future__ import annotations

import inspect

import torch

from skrr.encoders.readout import Readout, readout_of


class Feeding:
    """T5 / CLIP pipelines (PixArt, SD3, FLUX): pad to max_length; mask passed or not."""

    def __init__(self, cfg, tokenizer, preprocess=None):
        self.cfg, self.tokenizer, self.preprocess = cfg, tokenizer, preprocess
        self.max_length = int(cfg.max_length)
        self.hidden_state = int(cfg.get("hidden_state", -1))
        self.readout = readout_of(cfg)

    def _pad(self, texts: list[str], max_length: int, **kw):
        return self.tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                              add_special_tokens=True, return_tensors="pt", **kw)

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        if self.preprocess is not None:
            prompts = self.preprocess(list(prompts), clean_caption=bool(self.cfg.clean_caption))
        t = self._pad(list(prompts), self.max_length)
        if self.cfg.attention_mask:
            return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": t.attention_mask.bool()}
        return {"input_ids": t.input_ids, "attention_mask": None, "attend": torch.ones_like(t.input_ids, dtype=torch.bool)}

    def encode(self, encoder, input_ids, attention_mask) -> torch.Tensor:
        """What the pipeline takes from the encoder: the hidden state it reads, or its stacked read
        states (all positions; `attend` says which reach the denoiser)."""
        if self.readout == Readout():
            return encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        out = self.call(encoder, input_ids, attention_mask)
        return self.readout.read(out.hidden_states, len(out.hidden_states) - 1)

    def call(self, encoder, input_ids, attention_mask):
        """The encoder's forward with every hidden state, as the pipeline calls it."""
        return encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)


class SanaFeeding(Feeding):
    """SanaPipeline: lower-cased prompt after the complex human instruction (CHI), padded to
    CHI tokens + max_length - 2; the denoiser gets token 0 and the last max_length - 1 tokens.
    The negative prompt has no CHI and is padded to max_length."""

    def __init__(self, cfg, tokenizer, preprocess=None):
        super().__init__(cfg, tokenizer, preprocess)
        from diffusers import SanaPipeline

        default = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
        chi = cfg.get("complex_human_instruction", "default")
        self.instruction = list(default) if chi == "default" else list(chi or [])
        tokenizer.padding_side = "right"  # as the pipeline sets it

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        prompts = self.preprocess(list(prompts), clean_caption=bool(self.cfg.clean_caption))
        if negative or not self.instruction:
            t = self._pad(prompts, self.max_length)
            return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": t.attention_mask.bool()}
        chi = "\n".join(self.instruction)
        max_all = len(self.tokenizer.encode(chi)) + self.max_length - 2
        t = self._pad([chi + p for p in prompts], max_all)
        select = [0] + list(range(max_all - self.max_length + 1, max_all))
        attend = torch.zeros_like(t.attention_mask, dtype=torch.bool)
        attend[:, select] = t.attention_mask[:, select].bool()
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": attend}


class Lumina2Feeding(Feeding):
    """Lumina2Pipeline: `system_prompt <Prompt Start> prompt`, padded to max_length, hidden state -2
    (the penultimate: the last decoder layer never reaches the image). The negative prompt is the
    bare "" (no system prompt)."""

    def __init__(self, cfg, tokenizer, preprocess=None):
        super().__init__(cfg, tokenizer, preprocess)
        from diffusers import Lumina2Pipeline

        self.system_prompt = cfg.get("system_prompt") or Lumina2Pipeline(None, None, None, None, None).system_prompt
        tokenizer.padding_side = "right"  # as the pipeline's __init__ sets it

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        texts = list(prompts) if negative else [self.system_prompt + " <Prompt Start> " + p for p in prompts]
        t = self.tokenizer(texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt")
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": t.attention_mask.bool()}


class QwenImageFeeding(Feeding):
    """QwenImagePipeline: the prompt in its chat template, padded to the longest in the batch; the
    last hidden state; the template's first 34 tokens are dropped and at most max_length (the
    pipeline's max_sequence_length) tokens follow. The negative prompt goes through the same template."""

    def __init__(self, cfg, tokenizer, preprocess=None):
        super().__init__(cfg, tokenizer, preprocess)
        from diffusers import QwenImagePipeline

        helper = QwenImagePipeline(None, None, None, None, None)
        self.template, self.drop = helper.prompt_template_encode, helper.prompt_template_encode_start_idx
        self.tokenizer_max_length = helper.tokenizer_max_length

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        t = self.tokenizer([self.template.format(p) for p in prompts], max_length=self.tokenizer_max_length + self.drop,
                           padding=True, truncation=True, return_tensors="pt")
        rank = t.attention_mask.cumsum(1)  # 1-based index among the real tokens
        attend = t.attention_mask.bool() & (rank > self.drop) & (rank <= self.drop + self.max_length)
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": attend}

    def encode(self, encoder, input_ids, attention_mask) -> torch.Tensor:
        # Qwen2_5_VLModel: the pipeline's call without the LM head's logits (which it never reads)
        return encoder.model(input_ids=input_ids, attention_mask=attention_mask,
                             output_hidden_states=True).hidden_states[self.hidden_state]


class Flux2Feeding(Feeding):
    """Flux2Pipeline (FLUX.2-dev): the prompt as a chat (the pipeline's system message, then the
    user's prompt) through the processor's chat template, padded to max_length; the encoder gets
    the mask, but the denoiser receives every position, padding included (it is passed no mask).
    The model is guidance-distilled: no negative prompt is encoded, so the null term ("" in the
    same template) is only a regulariser."""

    def __init__(self, cfg, tokenizer, preprocess=None):
        super().__init__(cfg, tokenizer, preprocess)
        from diffusers.pipelines.flux2 import pipeline_flux2

        self.format_input, self.system_message = pipeline_flux2.format_input, pipeline_flux2.SYSTEM_MESSAGE

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        t = self.tokenizer.apply_chat_template(
            self.format_input(prompts=list(prompts), system_message=self.system_message), add_generation_prompt=False,
            tokenize=True, return_dict=True, return_tensors="pt", padding="max_length", truncation=True,
            max_length=self.max_length)
        return {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"],
                "attend": torch.ones_like(t["input_ids"], dtype=torch.bool)}

    def call(self, encoder, input_ids, attention_mask):
        return encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)


class ChatFeeding(Feeding):
    """Qwen3 pipelines: each prompt in the tokenizer's chat template (a user turn, the generation
    prompt), padded to max_length. Z-Image (thinking enabled) hands the denoiser the real tokens;
    FLUX.2-klein (thinking disabled) every position, padding included. The negative prompt ("")
    goes through the same template."""
    enable_thinking = True
    denoiser_reads_padding = False

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True, enable_thinking=self.enable_thinking)
                 for p in prompts]
        t = self.tokenizer(texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt")
        attend = torch.ones_like(t.input_ids, dtype=torch.bool) if self.denoiser_reads_padding else t.attention_mask.bool()
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": attend}


class Flux2KleinFeeding(ChatFeeding):
    enable_thinking = False
    denoiser_reads_padding = True

    def call(self, encoder, input_ids, attention_mask):
        return encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)


class ChromaFeeding(Feeding):
    """ChromaPipeline: T5 with the mask, padded to max_length; the denoiser attends the prompt's
    tokens and the first padding token after them."""

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        t = self._pad(list(prompts), self.max_length)
        lengths = t.attention_mask.sum(dim=1, keepdim=True)
        attend = torch.arange(t.input_ids.shape[1]).unsqueeze(0) <= lengths
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": attend}


class HiDreamFeeding(Feeding):
    """HiDreamImagePipeline's Llama (`_get_llama3_prompt_embeds`): padded to min(max_length, the
    tokenizer's limit), the mask passed; the denoiser attends every text position. `encode` gives
    the read states as a list, one per denoiser block (the pipeline stacks hidden_states[1:] and the
    transformer picks its `llama_layers`)."""

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        t = self._pad(list(prompts), min(self.max_length, self.tokenizer.model_max_length))
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask,
                "attend": torch.ones_like(t.input_ids, dtype=torch.bool)}


class WanFeeding(Feeding):
    """WanPipeline (`_get_t5_prompt_embeds`): each prompt cleaned by the pipeline's `prompt_clean`
    (ftfy where installed, HTML unescaped, whitespace collapsed), padded to max_length, the mask
    passed to umT5. The pipeline zeroes the padding positions' embeddings before the denoiser, so
    every plan hands it the same padding and D is taken over the real tokens."""

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        t = self._pad([prompt_clean(p) for p in prompts], self.max_length)
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask, "attend": t.attention_mask.bool()}


class LTX2Feeding(Feeding):
    """LTX2Pipeline (`_get_gemma_prompt_embeds`): each prompt stripped, padded on the left to max_length
    (the pipeline sets the tokenizer's padding side), the mask passed to Gemma-3; every hidden state,
    the embeddings included, interleaved per channel. The connectors put learned registers in the
    padding's places and the denoiser reads every position, so D covers them all."""

    def __init__(self, cfg, tokenizer, preprocess=None):
        super().__init__(cfg, tokenizer, preprocess)
        tokenizer.padding_side = "left"  # as the pipeline sets it
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def tokenize(self, prompts: list[str], negative: bool = False) -> dict:
        t = self._pad([p.strip() for p in prompts], self.max_length)
        return {"input_ids": t.input_ids, "attention_mask": t.attention_mask,
                "attend": torch.ones_like(t.input_ids, dtype=torch.bool)}


FEEDINGS = {"sana": SanaFeeding, "lumina2": Lumina2Feeding, "qwen_image": QwenImageFeeding, "flux2": Flux2Feeding,
            "flux2_klein": Flux2KleinFeeding, "z_image": ChatFeeding, "chroma": ChromaFeeding, "hidream": HiDreamFeeding,
            "wan": WanFeeding, "ltx2": LTX2Feeding}


def feeding_for(cfg, tokenizer, preprocess=None) -> Feeding:
    return FEEDINGS.get(cfg.get("family"), Feeding)(cfg, tokenizer, preprocess)
