"""Tiny random OWLv2 (real architecture, ~100k parameters) with an offline-built processor.

Traps this avoids:
- OWLv2 masks a query as padding when its first token id is 0 (`input_ids[..., 0] > 0`), so
  BOS must not get id 0 (CLIPTokenizer's default vocab puts it there).
- The text model pools at `input_ids.argmax(-1)`, so EOS must hold the largest id, as in CLIP.
- The processor pads every query to `model_max_length`; it must not exceed the text model's
  `max_position_embeddings`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPTokenizer,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessor,
    Owlv2Processor,
)

IMAGE_SIZE = 64
PATCH_SIZE = 16
MAX_TEXT_LENGTH = 16
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
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


def _tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer: every byte (and its end-of-word form) is a token, no merges.

    Ids follow CLIP's layout: byte tokens first ("!" = 0, the pad token), BOS and EOS last.
    """
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(
        vocab=vocab,
        merges=[],
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token="!",
        model_max_length=MAX_TEXT_LENGTH,
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `Owlv2ForObjectDetection` and its processor into `directory`."""
    tokenizer = _tokenizer()
    config = Owlv2Config(
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
        },
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(config).eval()
    image_processor = Owlv2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
