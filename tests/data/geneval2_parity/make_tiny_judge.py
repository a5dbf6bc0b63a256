"""Build the tiny random-weight Qwen3-VL judge of tests/test_geneval2_parity.py (run once, with
transformers 4.57.0, GenEval 2's pinned version; see README.md here):

    python make_tiny_judge.py OUT_DIR

Writes a Hugging Face checkpoint (config, safetensors, tokenizer, fast image processor, video
processor, chat template) that GenEval 2's evaluation.py can load as "Qwen/Qwen3-VL-8B-Instruct"
from a cache folder and that skrr loads by path.
"""
import sys

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Qwen2TokenizerFast,
    Qwen2VLImageProcessorFast,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
WORDS = ("Yes yes No no one One two Two three Three four Four five Five six Six seven Seven eight Eight nine Nine "
         "ten Ten 1 2 3 4 5 6 7 8 9 10 How many Is Are Do there any in the image Answer in one word user assistant "
         "cat dog cup car tree bird book lamp bug bugs legs have red left of chasing")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# Qwen2's pre-tokenization (its tokenizer.json's; transformers 5 rebuilds every Qwen2 tokenizer with it,
# so a tiny tokenizer without it would split " 4" one way under 4.57 and another under 5)
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
               r"""\s+(?!\S)|\s+""")


def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = [WORDS, WORDS.lower(), " ".join(WORDS.split()[::-1])] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                              additional_special_tokens=SPECIAL[1:])


def main(out: str) -> None:
    tok = tokenizer()
    pixels = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessorFast(patch_size=16, temporal_patch_size=2, merge_size=2, size=pixels,
                                                  image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tok, video_processor=Qwen3VLVideoProcessor(size=pixels), chat_template=CHAT_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                         rope_theta=10000.0, rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1],
                                                           "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # larger logits than the 0.02-std init, so first-token probabilities differ visibly
        model.lm_head.weight.mul_(8.0)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)


if __name__ == "__main__":
    main(sys.argv[1])
