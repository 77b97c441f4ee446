"""Tiny random Depth Anything (real `DepthAnythingForDepthEstimation` over a tiny DINOv2
backbone) with a DPT image processor set up like Depth-Anything-V2-Small-hf's (keep aspect
ratio, multiple of the 14 px patch, bicubic), at 56 px instead of 518."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTImageProcessor,
)

from tests.tiny.checkpoint import save_checkpoint, seeded

PATCH_SIZE = 14
IMAGE_SIZE = 4 * PATCH_SIZE
HIDDEN_SIZE = 32


def build(directory: Path) -> Path:
    """Save a seeded tiny Depth Anything and its image processor into `directory`."""
    backbone = Dinov2Config(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=PATCH_SIZE,
        reassemble_hidden_size=HIDDEN_SIZE,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    model = seeded(DepthAnythingForDepthEstimation, config)
    for module in [model.neck, model.head]:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                layer.reset_parameters()
    processor = DPTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        keep_aspect_ratio=True,
        ensure_multiple_of=PATCH_SIZE,
        resample=3,  # bicubic, as the released checkpoints
        do_pad=False,
    )
    return save_checkpoint(directory, model, processor)


def build_metric(directory: Path) -> Path:
    """The same tiny model with a metric head (sigmoid x max_depth metres)."""
    build(directory)
    config = DepthAnythingConfig.from_pretrained(directory)
    config.depth_estimation_type = "metric"
    config.max_depth = 20
    config.save_pretrained(directory)
    return directory
