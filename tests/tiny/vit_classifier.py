"""Tiny random ViT image classifier (real `ViTForImageClassification`) with 5 weather classes.

The class names live in `config.id2label`, as in released fine-tunes; the image processor is
the one real ViT checkpoints ship (resize to a square, rescale, normalise).
"""

from __future__ import annotations

from pathlib import Path

from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from tests.tiny.checkpoint import label_maps, save_checkpoint, seeded

IMAGE_SIZE = 32
WEATHER = ["cloudy", "foggy", "rainy", "snowy", "sunny"]


def build(directory: Path) -> Path:
    """Save a seeded tiny ViT classifier and its image processor into `directory`."""
    config = ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
        **label_maps(WEATHER),
    )
    model = seeded(ViTForImageClassification, config)
    processor = ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return save_checkpoint(directory, model, processor)
