"""A tiny random-weight Qwen3-VL judge (the real classes, a config small enough for CPU tests), built offline."""
from __future__ import annotations

import torch

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen-VL's chat format (<|im_start|>role\n ... <|im_end|>\n, the image between vision markers),
# written here for the test tokenizer; a real judge brings its own template.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Words the tiny tokenizer learns whole, so answers and their variants tokenize like words.
ANSWER_WORDS = ("Yes yes No no one One two Two three Three four Four five Five six Six seven Seven eight Eight "
                "nine Nine ten Ten 1 2 3 4 5 6 7 8 9 10 How many Is Are there any in the image Answer in one word")


def tiny_processor(pixels: int = 64 * 64):
    """Qwen3VLProcessor with the fast (torchvision) image processor at Qwen3-VL's patch 16 / merge 2,
    images resized to at most `pixels`, and a tiny byte-level BPE tokenizer with Qwen's special tokens."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    from skrr.models.tiny import qwen2_tokenizer

    tokenizer = qwen2_tokenizer(ANSWER_WORDS)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", *VISION_TOKENS]})
    tokenizer.pad_token = "<|endoftext|>"
    image_processor = Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2,
                                            image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                            size={"shortest_edge": 32 * 32, "longest_edge": pixels})
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": 32 * 32, "longest_edge": pixels})
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                            chat_template=CHAT_TEMPLATE)


def tiny_qwen3vl(processor, seed: int = 0):
    """A Qwen3VLForConditionalGeneration (2 text layers of width 32, 2 vision blocks) for `processor`'s tokenizer."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                          "mrope_interleaved": True}, pad_token_id=tok.pad_token_id),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model
