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

from tests.tiny.owlv2 import MAX_TEXT_LENGTH, _tokenizer

EMBED_DIM = 512


def build_text_encoder(directory: Path) -> Path:
    """Save a seeded tiny `CLIPModel` (+ byte-level tokenizer) whose projection is 512 wide."""
    tokenizer = _tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": MAX_TEXT_LENGTH,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=EMBED_DIM,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build(directory: Path) -> Path:
    """Write `directory/yolo_world.pt` (random weights) and `directory/clip/` (text encoder)."""
    from ultralytics import YOLOWorld

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    YOLOWorld("yolov8n-worldv2.yaml").save(directory / "yolo_world.pt")
    build_text_encoder(directory / "clip")
    return directory
