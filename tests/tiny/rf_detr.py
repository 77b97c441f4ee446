"""Tiny random RF-DETR (real `RfDetrForObjectDetection` architecture: windowed DINOv2 backbone,
C2f projector, deformable decoder; ~0.1M parameters, 64 px input) with its image processor.

Traps this avoids:
- The classifier's bias starts at -log(99) (a 1 % prior), so every random score is ~0.01 and no
  threshold a test would use keeps a box; the builder zeroes it so scores spread around 0.5.
- `group_detr` is 13 in released checkpoints (training-time query groups; inference uses one
  group): 1 keeps the tiny model tiny and changes nothing at inference.
- The DINOv2 backbone's windows must tile its patch grid: 64 px / patch 8 = 8x8 patches in 2x2
  windows.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoImageProcessor,
    RfDetrConfig,
    RfDetrForObjectDetection,
    RfDetrImageProcessor,
)

from tests.tiny.checkpoint import label_maps, save_checkpoint, seeded

IMAGE_SIZE = 64
#: A COCO-like vocabulary, small; the tests ask for these names.
LABELS = ["person", "bicycle", "car", "cat", "dog"]


def config() -> RfDetrConfig:
    backbone = {
        "model_type": "rf_detr_dinov2",
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
        "num_windows": 2,
        "num_register_tokens": 0,
    }
    return RfDetrConfig(
        backbone_config=backbone,
        d_model=32,
        decoder_ffn_dim=32,
        decoder_layers=2,
        decoder_self_attention_heads=2,
        decoder_cross_attention_heads=2,
        num_queries=12,
        group_detr=1,
        intermediate_size=32,
        **label_maps(LABELS),
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `RfDetrForObjectDetection` and its processor; check they reload."""
    model = seeded(RfDetrForObjectDetection, config())
    with torch.no_grad():
        model.class_embed.bias.zero_()
    processor = RfDetrImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    save_checkpoint(directory, model, processor)
    RfDetrForObjectDetection.from_pretrained(directory, local_files_only=True)
    AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    return directory
