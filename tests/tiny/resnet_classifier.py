"""Tiny random ResNet classifier (real `ResNetForImageClassification`) with 11 vehicle types.

Uses the image processor microsoft/resnet-* ships (`ConvNextImageProcessor`: resize the
shortest edge to size / crop_pct, centre-crop), at 32 px instead of 224.
"""

from __future__ import annotations

from pathlib import Path

from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

from tests.tiny.checkpoint import label_maps, save_checkpoint, seeded

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
        **label_maps(VEHICLES),
    )
    model = seeded(ResNetForImageClassification, config)
    processor = ConvNextImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_pct=0.875)
    return save_checkpoint(directory, model, processor)
