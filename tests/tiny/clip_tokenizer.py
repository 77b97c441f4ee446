"""The byte-level CLIP tokenizer of the tiny CLIP-style models (OWLv2, CLIP, X-CLIP and
YOLO-World's text encoder), and the tiny towers' configs around it.

Every byte (and its end-of-word form) is a token and there are no merges, so any text tokenises
offline. Ids follow CLIP's layout: byte tokens first ("!" = 0), BOS and EOS last. EOS holds the
largest id: CLIP-style text towers pool at `input_ids.argmax(-1)`.
"""

from __future__ import annotations

from typing import Any

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """The 256 printable characters byte-level BPE (GPT-2, CLIP) maps bytes to, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [byte for byte in range(256) if byte not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def byte_level_tokenizer(max_length: int, pad_token: str = EOS) -> CLIPTokenizer:
    """A CLIP tokenizer without merges that pads or truncates to `max_length` tokens.

    `max_length` must not exceed the text tower's positions, or long prompts crash the forward
    instead of being truncated. Released CLIP tokenizers pad with EOS.
    """
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), BOS, EOS]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=[],
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=max_length,
    )


def text_config(tokenizer: CLIPTokenizer, max_length: int) -> dict[str, Any]:
    """A tiny text tower (2 layers, 32 wide) reading `tokenizer`, with `max_length` positions."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": max_length,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def vision_config(image_size: int, patch_size: int, num_hidden_layers: int = 2) -> dict[str, Any]:
    """A tiny ViT image tower (32 wide) over `image_size` px images."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
    }
