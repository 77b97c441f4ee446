"""Tiny random SigLIP 2 (`Siglip2Model` + `Siglip2Processor`, NaFlex: a variable number of
patches per image, keeping its aspect ratio), from the tiny SigLIP's parts (tests/tiny/siglip.py).
"""

from __future__ import annotations

from pathlib import Path

from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.siglip import (
    IMAGE_SIZE,
    PATCH_SIZE,
    set_logit_scale_and_bias,
    tokenizer,
    tower_configs,
)


def build(directory: Path) -> Path:
    """Save a seeded tiny `Siglip2Model` and its processor into `directory`."""
    text_tokenizer = tokenizer()
    text, vision = tower_configs(text_tokenizer)
    max_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    config = Siglip2Config(text_config=text, vision_config={**vision, "num_patches": max_patches})
    model = seeded(Siglip2Model, config)
    set_logit_scale_and_bias(model)
    image_processor = Siglip2ImageProcessor(patch_size=PATCH_SIZE, max_num_patches=max_patches)
    processor = Siglip2Processor(image_processor=image_processor, tokenizer=text_tokenizer)
    return save_checkpoint(directory, model, processor)
