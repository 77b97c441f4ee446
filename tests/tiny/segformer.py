"""Tiny random SegFormer (real `SegformerForSemanticSegmentation`, ~20k parameters) with the 18
clothes classes of the zoo's segformer-b2-clothes, and a 64x64 image processor."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

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
        id2label=dict(enumerate(CLOTHES_LABELS)),
        label2id={label: i for i, label in enumerate(CLOTHES_LABELS)},
    )
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).eval()
    processor = SegformerImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_reduce_labels=False
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
