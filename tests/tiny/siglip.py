"""Tiny random SigLIP (`SiglipModel` + `SiglipProcessor`) and SigLIP 2 (`Siglip2Model` +
`Siglip2Processor`), both with an offline-built fast tokenizer.

Released SigLIP checkpoints ship a SentencePiece model (`spiece.model`, `SiglipTokenizer`),
which needs the `sentencepiece` package; it is not installed here and no SentencePiece model
can be built without it. Both tiny models therefore use `Siglip2Tokenizer`, the fast
(`tokenizers`) Gemma-style BPE that SigLIP 2 ships, built from a byte-fallback vocabulary with
no merges. The adapter never sees the tokenizer class: `AutoProcessor` picks whatever
`tokenizer_config.json` names, exactly as for a released checkpoint.

The text tower pools the last position and is trained on texts padded to 64 tokens, so
`max_position_embeddings` stays 64 (what transformers' zero-shot pipeline pads SigLIP to).
SigLIP 2 is built by tests/tiny/siglip2.py from the same parts.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import (
    Siglip2Model,
    Siglip2Tokenizer,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
)

from tests.tiny.checkpoint import save_checkpoint, seeded

IMAGE_SIZE = 32
PATCH_SIZE = 8
TEXT_LENGTH = 64
HIDDEN_SIZE = 32
LOGIT_SCALE, LOGIT_BIAS = 10.0, 1.0
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def tokenizer() -> Siglip2Tokenizer:
    """Specials first (pad = 0), then the 256 byte-fallback tokens, then lower-case letters."""
    tokens = SPECIAL + [f"<0x{byte:02X}>" for byte in range(256)]
    tokens += list("abcdefghijklmnopqrstuvwxyz▁")
    return Siglip2Tokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=[],
        model_max_length=TEXT_LENGTH,
    )


def tower_configs(text_tokenizer: Siglip2Tokenizer) -> tuple[dict, dict]:
    text = {
        "vocab_size": len(text_tokenizer),
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": TEXT_LENGTH,
        "pad_token_id": text_tokenizer.pad_token_id,
        "bos_token_id": text_tokenizer.bos_token_id,
        "eos_token_id": text_tokenizer.eos_token_id,
    }
    vision = {
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": PATCH_SIZE,
    }
    return text, vision


def set_logit_scale_and_bias(model: SiglipModel | Siglip2Model) -> None:
    """Random init leaves scale 1 and bias 0, under which a forgotten bias goes unseen; released
    models learn about 112 and -16. These keep random cosines in the sigmoid's live range."""
    with torch.no_grad():
        model.logit_scale.fill_(math.log(LOGIT_SCALE))
        model.logit_bias.fill_(LOGIT_BIAS)


def build(directory: Path) -> Path:
    """Save a seeded tiny `SiglipModel` and its processor into `directory`."""
    text_tokenizer = tokenizer()
    text, vision = tower_configs(text_tokenizer)
    config = SiglipConfig(text_config=text, vision_config={**vision, "image_size": IMAGE_SIZE})
    model = seeded(SiglipModel, config)
    set_logit_scale_and_bias(model)
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=text_tokenizer)
    return save_checkpoint(directory, model, processor)
