"""Tiny random YOLO-World (real yolov8n-worldv2 architecture, ~3.7M parameters) plus a tiny
random transformers CLIP as its offline text encoder.

Needs ultralytics (import it only after `pytest.importorskip("ultralytics")`). Traps:
- The CLIP projection must be 512 wide: that is the embedding the worldv2 head is built for.
- `YOLOWorld.save` stores the weights in fp16, like released checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config, vision_config
from tests.tiny.owlv2 import MAX_TEXT_LENGTH, PAD_TOKEN

EMBED_DIM = 512


def build_text_encoder(directory: Path) -> Path:
    """Save a seeded tiny `CLIPModel` (+ byte-level tokenizer) whose projection is 512 wide."""
    tokenizer = byte_level_tokenizer(MAX_TEXT_LENGTH, pad_token=PAD_TOKEN)
    config = CLIPConfig(
        text_config=text_config(tokenizer, MAX_TEXT_LENGTH),
        vision_config=vision_config(image_size=32, patch_size=16, num_hidden_layers=1),
        projection_dim=EMBED_DIM,
    )
    return save_checkpoint(directory, seeded(CLIPModel, config), tokenizer)


def build(directory: Path) -> Path:
    """Write `directory/yolo_world.pt` (random weights) and `directory/clip/` (text encoder)."""
    from ultralytics import YOLOWorld

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    YOLOWorld("yolov8n-worldv2.yaml").save(directory / "yolo_world.pt")
    build_text_encoder(directory / "clip")
    return directory
