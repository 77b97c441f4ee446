"""Tiny random EdgeTAM video model (real `EdgeTamVideoModel` architecture: a timm RepViT image
encoder, SAM2's prompt encoder and mask decoder, a perceiver that compresses each memory into
a few latents; ~1.1M parameters, 64 px input) with the `Sam2VideoProcessor` EdgeTAM uses.

Traps this avoids (beyond those of tests/tiny/sam2.py, which apply here too):
- The image encoder is a timm model behind transformers' `timm_wrapper`: `timm` must be
  installed (a dependency) and its config needs `num_classes` (None crashes the wrapper's
  config even for a features-only backbone).
- RepViT's four stages give strides 4/8/16/32; the vision config lists the channels deepest
  first and the three finest feature sizes.
- Random weights score every object absent (empty masks): the builder lifts the object-score
  head's bias.
- The perceiver's 2-D latents must form a square grid whose side is
  `memory_attention_rope_k_sizes` (2x2 here; 16x16 in released weights).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    EdgeTamVideoConfig,
    EdgeTamVideoModel,
)

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.sam2 import HIDDEN, IMAGE_SIZE, INIT_RANGE, processor, shared_parts

CHANNELS = [8, 16, 32, 64]  # RepViT stages, strides 4, 8, 16, 32
LATENT_SIDE = 2
#: Added to the object-score head: at seed 0 its logits are ~-0.3, so the model would call
#: every object absent and return empty masks (transformers blanks them), proving nothing.
OBJECT_SCORE_BIAS = 1.0


def config() -> EdgeTamVideoConfig:
    """The tiny configuration."""
    stride16 = IMAGE_SIZE // 16
    vision = {
        "model_type": "edgetam_vision_model",
        "backbone_config": {
            "model_type": "timm_wrapper",
            "architecture": "repvit_m1",
            "num_classes": 1,
            "do_pooling": False,
            "model_args": {
                "in_chans": 3,
                "features_only": True,
                "out_indices": [0, 1, 2, 3],
                "embed_dim": CHANNELS,
                "depth": [1, 1, 1, 1],
            },
        },
        "backbone_channel_list": CHANNELS[::-1],
        "backbone_feature_sizes": [[IMAGE_SIZE // s] * 2 for s in (4, 8, 16)],
        "fpn_hidden_size": HIDDEN,
        "initializer_range": INIT_RANGE,
    }
    return EdgeTamVideoConfig(
        vision_config=vision,
        **shared_parts(),
        memory_attention_mlp_hidden_size=64,
        memory_attention_rope_feat_sizes=[stride16, stride16],
        memory_attention_rope_k_sizes=[LATENT_SIDE, LATENT_SIDE],
        perceiver_resampler_num_latents=4,
        perceiver_resampler_num_latents_2d=LATENT_SIDE**2,
        perceiver_resampler_mlp_intermediate_size=64,
        perceiver_resampler_num_layers=1,
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `EdgeTamVideoModel` and its processor into `directory`."""
    model = seeded(EdgeTamVideoModel, config())
    with torch.no_grad():  # objects present (see OBJECT_SCORE_BIAS)
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(OBJECT_SCORE_BIAS)
    return save_checkpoint(directory, model, processor())
