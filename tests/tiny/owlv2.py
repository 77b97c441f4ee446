"""Tiny random OWLv2 (real architecture, ~100k parameters) with an offline-built processor.

Traps this avoids:
- OWLv2 masks a query as padding when its first token id is 0 (`input_ids[..., 0] > 0`), so
  BOS must not get id 0 (CLIPTokenizer's default vocab puts it there).
- The text model pools at `input_ids.argmax(-1)`, so EOS must hold the largest id, as in CLIP.
- The processor pads every query to `model_max_length`; it must not exceed the text model's
  `max_position_embeddings`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config, vision_config

IMAGE_SIZE = 64
PATCH_SIZE = 16
MAX_TEXT_LENGTH = 16
#: Queries pad with "!" (id 0, the first byte token); BOS, which starts every query, is not 0.
PAD_TOKEN = "!"


def build(directory: Path) -> Path:
    """Save a seeded tiny `Owlv2ForObjectDetection` and its processor into `directory`."""
    tokenizer = byte_level_tokenizer(MAX_TEXT_LENGTH, pad_token=PAD_TOKEN)
    config = Owlv2Config(
        text_config=text_config(tokenizer, MAX_TEXT_LENGTH),
        vision_config=vision_config(IMAGE_SIZE, PATCH_SIZE),
        projection_dim=32,
    )
    model = seeded(Owlv2ForObjectDetection, config)
    image_processor = Owlv2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    return save_checkpoint(directory, model, processor)
