"""Tiny Llava (real `LlavaForConditionalGeneration`: CLIP vision tower + Llama) and processor.

`build_scripted(directory, reply)` wires the language model like `llama.build_scripted`: greedy
decoding answers `reply` whatever the prompt and images, so a real `transformers serve` process
returns known JSON. The images still go through the real processor and vision tower: each one
expands to `IMAGE_TOKENS` placeholder tokens, which shows in the server's `usage.prompt_tokens`.
`build(directory)` keeps the random weights.

Traps this avoids:
- `image_token_index` in the config must be the tokenizer's `<image>` id, and the processor must
  expand one `<image>` into exactly as many tokens as the projector emits per image:
  (IMAGE_SIZE / PATCH_SIZE)^2 patches (the "default" feature strategy drops CLIP's CLS token).
- `transformers serve` picks the processor (not the bare tokenizer) only when one is saved, and
  calls it with a chat template that must render `{"type": "image"}` parts as `<image>`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoProcessor,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from tests.tiny import llama

IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


def build(directory: Path) -> Path:
    """Save a seeded random tiny Llava and its processor into `directory`."""
    return _build(directory, None)


def build_scripted(directory: Path, reply: str) -> Path:
    """Save a tiny Llava whose greedy reply to any chat (with images) is exactly `reply`."""
    return _build(directory, reply)


def _build(directory: Path, reply: str | None) -> Path:
    tokenizer = llama.build_tokenizer([reply] if reply else None)
    image_processor = CLIPImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=llama.CHAT_TEMPLATE,
        image_token="<image>",
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            projection_dim=32,
        ),
        text_config=llama.text_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    torch.manual_seed(llama.SEED)
    model = LlavaForConditionalGeneration(config).eval()
    if reply is not None:
        llama.script_replies(model, model.model.language_model, tokenizer, reply)
    model.generation_config.do_sample = False
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    AutoProcessor.from_pretrained(directory, local_files_only=True)  # fail here, not in a test
    return directory
