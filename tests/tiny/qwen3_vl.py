"""Tiny Qwen3-VL (real `Qwen3VLForConditionalGeneration`: a ViT with 2-D RoPE, patch merger and
DeepStack feature injection, over a Qwen3 decoder with interleaved multimodal RoPE; ~0.1M
parameters) with its `Qwen3VLProcessor`, for the local engine's /api/summarize path.

Traps this avoids:
- The image pipeline cuts 16 px patches, merges 2x2 of them and pairs frames in time: an image
  is resized to a multiple of 32 px; `min_pixels`/`max_pixels` (the image processor's
  `size`) keep it to a few merged tokens so generation stays fast on a CPU.
- The ids in the config (`image_token_id`, `vision_start_token_id`, ...) must be the
  tokenizer's, and the chat template must wrap each image in `<|vision_start|>` ...
  `<|vision_end|>` (the model finds the images' positions for its 3-D RoPE by them).
- The text RoPE's `mrope_section` (time, height, width) must sum to half the head size.
- The vision tower's `out_hidden_size` is the decoder's hidden size; DeepStack indexes must
  name vision layers that exist.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoProcessor,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from tests.tiny import llama

HIDDEN = 32
HEADS = 2
PATCH = 16
MERGE = 2
#: Pixels of a resized image: from one to four merged tokens (32x32 to 64x64 px).
MIN_PIXELS, MAX_PIXELS = (PATCH * MERGE) ** 2, (2 * PATCH * MERGE) ** 2
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = llama.CHAT_TEMPLATE.replace(
    "{% if part['type'] == 'image' %}<image>",
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>",
)


def build(directory: Path) -> Path:
    """Save a seeded random tiny Qwen3-VL and its processor into `directory`."""
    tokenizer = llama.build_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": VISION_TOKENS}, replace_extra_special_tokens=False
    )
    tokenizer.image_token = "<|image_pad|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS}
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=PATCH, merge_size=MERGE),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size=size, patch_size=PATCH, merge_size=MERGE),
        chat_template=CHAT_TEMPLATE,
    )
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": HEADS,
            "num_key_value_heads": HEADS,
            "head_dim": HIDDEN // HEADS,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],  # sums to head_dim / 2
                "mrope_interleaved": True,
            },
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "hidden_size": HIDDEN,
            "intermediate_size": 64,
            "num_heads": HEADS,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": 2,
            "out_hidden_size": HIDDEN,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(llama.SEED)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.do_sample = False
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    AutoProcessor.from_pretrained(directory, local_files_only=True)  # fail here, not in a test
    return directory
