"""Tiny random SAM 3 image model (real `Sam3Model` architecture: windowed ViT + FPN, CLIP text
tower, geometry encoder, DETR encoder/decoder with a presence head, mask decoder; ~0.3M
parameters, 112 px input) with its `Sam3Processor`.

Traps this avoids:
- Every sub-config names its `model_type` where it holds a backbone (the ViT inside the vision
  config): a dict without one makes the config look up model type None.
- `Sam3Processor` always pads text to 32 tokens, so the text tower needs 32 positions; the
  byte-level CLIP tokenizer of the other tiny models (tests/tiny/clip_tokenizer.py) reads any
  prompt offline.
- The ViT's patch grid (112 / 14 = 8) must tile into its attention windows (4), and the FPN's
  feature sizes follow scale factors 4, 2, 1 of that grid.
"""

from __future__ import annotations

from pathlib import Path

from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config

IMAGE_SIZE = 112
HIDDEN = 32
TEXT_LENGTH = 32  # what Sam3Processor pads every prompt to


def config() -> Sam3Config:
    grid = IMAGE_SIZE // 14
    layers = {"num_attention_heads": 2, "intermediate_size": 64}
    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                "hidden_size": HIDDEN,
                "num_hidden_layers": 2,
                "image_size": IMAGE_SIZE,
                "pretrain_image_size": IMAGE_SIZE,
                "patch_size": 14,
                "window_size": grid // 2,
                "global_attn_indexes": [1],
                **layers,
            },
            "fpn_hidden_size": HIDDEN,
            "backbone_feature_sizes": [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
        },
        text_config={
            **text_config(byte_level_tokenizer(TEXT_LENGTH), TEXT_LENGTH),
            "num_hidden_layers": 1,
            "projection_dim": HIDDEN,
        },
        geometry_encoder_config={"hidden_size": HIDDEN, "num_layers": 1, **layers},
        detr_encoder_config={"hidden_size": HIDDEN, "num_layers": 1, **layers},
        detr_decoder_config={"hidden_size": HIDDEN, "num_layers": 2, "num_queries": 12, **layers},
        mask_decoder_config={"hidden_size": HIDDEN, "num_attention_heads": 2},
    )


def processor() -> Sam3Processor:
    return Sam3Processor(
        image_processor=Sam3ImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            mask_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4},
        ),
        tokenizer=byte_level_tokenizer(TEXT_LENGTH),
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `Sam3Model` and its processor into `directory`."""
    return save_checkpoint(directory, seeded(Sam3Model, config()), processor())
