"""Tiny random CLIP (real `CLIPModel` architecture) with an offline-built `CLIPProcessor`.

The tokenizer is byte-level BPE with no merges (every byte is a token), laid out like CLIP's:
byte tokens first, BOS and EOS last. The text tower pools at the first EOS, so the config's
`eos_token_id` must be the tokenizer's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

IMAGE_SIZE = 32
PATCH_SIZE = 8
#: Text positions: room for "a photo of a delivery uniform" one byte a token, plus BOS/EOS.
MAX_TEXT_LENGTH = 48
PROJECTION_DIM = 24
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """The 256 printable characters GPT-2/CLIP byte-level BPE maps bytes to, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer: each byte (and its end-of-word form) is a token."""
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [BOS, EOS]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=[],
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_TEXT_LENGTH,
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `CLIPModel` and its processor into `directory`."""
    text_tokenizer = tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(text_tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": MAX_TEXT_LENGTH,
            "pad_token_id": text_tokenizer.pad_token_id,
            "bos_token_id": text_tokenizer.bos_token_id,
            "eos_token_id": text_tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=text_tokenizer)

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
