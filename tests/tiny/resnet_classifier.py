"""Tiny random ResNet classifier (real `ResNetForImageClassification`) with 11 vehicle types.

Uses the image processor microsoft/resnet-* ships (`ConvNextImageProcessor`: resize the
shortest edge to size / crop_pct, centre-crop), at 32 px instead of 224.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

IMAGE_SIZE = 32
VEHICLES = [
    "ambulance",
    "bicycle",
    "bus",
    "car",
    "fire truck",
    "motorcycle",
    "pickup",
    "police car",
    "taxi",
    "truck",
    "van",
]


def build(directory: Path) -> Path:
    """Save a seeded tiny ResNet classifier and its image processor into `directory`."""
    config = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        id2label=dict(enumerate(VEHICLES)),
        label2id={name: i for i, name in enumerate(VEHICLES)},
    )
    torch.manual_seed(0)
    model = ResNetForImageClassification(config).eval()
    processor = ConvNextImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_pct=0.875)

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
