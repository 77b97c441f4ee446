"""Tiny random X-CLIP (real `XCLIPModel`, ~110k parameters) with an offline-built processor set
up like microsoft/xclip-base-patch32's: a CLIP tokenizer and a VideoMAE image processor with
CLIP's mean/std (shortest edge resize + centre crop), at 32 px and 4 frames instead of 224 / 8.

Traps this avoids:
- X-CLIP's text model pools at `input_ids.argmax(-1)` (legacy eos_token_id == 2 path), so EOS
  must hold the largest id, as in CLIP's own vocabulary.
- The tokenizer's `model_max_length` must not exceed the text model's position count, or long
  prompts crash the forward instead of being truncated.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.x_clip import XCLIPProcessor

IMAGE_SIZE = 32
PATCH_SIZE = 16
NUM_FRAMES = 4
MAX_TEXT_LENGTH = 64
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """The 256 printable characters byte-level BPE (GPT-2, CLIP) maps bytes to, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [byte for byte in range(256) if byte not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def _tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer without merges: every byte and its end-of-word form is a token.

    Ids follow CLIP's layout: byte tokens first, BOS and EOS last (EOS = the largest id).
    """
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), BOS, EOS]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=[],
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,  # as in the released X-CLIP tokenizer
        model_max_length=MAX_TEXT_LENGTH,
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `XCLIPModel` and its processor into `directory`."""
    tokenizer = _tokenizer()
    config = XCLIPConfig(
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
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "num_frames": NUM_FRAMES,
            "mit_hidden_size": 32,
            "mit_intermediate_size": 64,
            "mit_num_attention_heads": 2,
        },
        projection_dim=32,
        prompt_layers=1,
        prompt_num_attention_heads=2,
    )
    torch.manual_seed(0)
    model = XCLIPModel(config).eval()
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    processor = XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
