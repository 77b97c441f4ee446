"""Tiny random X-CLIP (real `XCLIPModel`, ~110k parameters) with an offline-built processor set
up like microsoft/xclip-base-patch32's: a CLIP tokenizer and a VideoMAE image processor with
CLIP's mean/std (shortest edge resize + centre crop), at 32 px and 4 frames instead of 224 / 8.

Traps this avoids:
- X-CLIP's text model pools at `input_ids.argmax(-1)` (legacy eos_token_id == 2 path), so EOS
  must hold the largest id, as in CLIP's own vocabulary (the shared byte-level tokenizer does).
- The tokenizer's `model_max_length` must not exceed the text model's position count, or long
  prompts crash the forward instead of being truncated.
"""

from __future__ import annotations

from pathlib import Path

from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.x_clip import XCLIPProcessor

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config, vision_config

IMAGE_SIZE = 32
PATCH_SIZE = 16
NUM_FRAMES = 4
MAX_TEXT_LENGTH = 64


def build(directory: Path) -> Path:
    """Save a seeded tiny `XCLIPModel` and its processor into `directory`."""
    tokenizer = byte_level_tokenizer(MAX_TEXT_LENGTH)  # pads with EOS, as released X-CLIP
    config = XCLIPConfig(
        text_config=text_config(tokenizer, MAX_TEXT_LENGTH),
        vision_config={
            **vision_config(IMAGE_SIZE, PATCH_SIZE),
            "num_frames": NUM_FRAMES,
            "mit_hidden_size": 32,
            "mit_intermediate_size": 64,
            "mit_num_attention_heads": 2,
        },
        projection_dim=32,
        prompt_layers=1,
        prompt_num_attention_heads=2,
    )
    model = seeded(XCLIPModel, config)
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    processor = XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return save_checkpoint(directory, model, processor)
