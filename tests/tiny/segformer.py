"""Tiny random SegFormer (real `SegformerForSemanticSegmentation`, ~20k parameters) with the 18
clothes classes of the zoo's segformer-b2-clothes, and a 64x64 image processor."""

from __future__ import annotations

from pathlib import Path

from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

from tests.tiny.checkpoint import label_maps, save_checkpoint, seeded

IMAGE_SIZE = 64
#: id2label of mattmdjaga/segformer_b2_clothes, in id order.
CLOTHES_LABELS = [
    "Background",
    "Hat",
    "Hair",
    "Sunglasses",
    "Upper-clothes",
    "Skirt",
    "Pants",
    "Dress",
    "Belt",
    "Left-shoe",
    "Right-shoe",
    "Face",
    "Left-leg",
    "Right-leg",
    "Left-arm",
    "Right-arm",
    "Bag",
    "Scarf",
]


def build(directory: Path) -> Path:
    """Save a seeded tiny SegFormer and its image processor into `directory`."""
    config = SegformerConfig(
        num_encoder_blocks=4,
        depths=[1, 1, 1, 1],
        sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 2, 2],
        mlp_ratios=[2, 2, 2, 2],
        decoder_hidden_size=16,
        **label_maps(CLOTHES_LABELS),
    )
    model = seeded(SegformerForSemanticSegmentation, config)
    processor = SegformerImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_reduce_labels=False
    )
    return save_checkpoint(directory, model, processor)
