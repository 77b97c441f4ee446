"""Tiny random CLIP (real `CLIPModel` architecture) with an offline-built `CLIPProcessor`.

The tokenizer is the shared byte-level one (tests/tiny/clip_tokenizer.py). The text tower pools
at the first EOS, so the config's `eos_token_id` must be the tokenizer's.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config, vision_config

IMAGE_SIZE = 32
PATCH_SIZE = 8
#: Text positions: room for "a photo of a delivery uniform" one byte a token, plus BOS/EOS.
MAX_TEXT_LENGTH = 48
PROJECTION_DIM = 24


def build(directory: Path) -> Path:
    """Save a seeded tiny `CLIPModel` and its processor into `directory`."""
    tokenizer = byte_level_tokenizer(MAX_TEXT_LENGTH)
    config = CLIPConfig(
        text_config=text_config(tokenizer, MAX_TEXT_LENGTH),
        vision_config=vision_config(IMAGE_SIZE, PATCH_SIZE),
        projection_dim=PROJECTION_DIM,
    )
    model = seeded(CLIPModel, config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return save_checkpoint(directory, model, processor)
