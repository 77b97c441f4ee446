"""Tiny random Florence-2 (DaViT vision tower + BART text model) with a processor built offline.

Traps this avoids:
- The processor reads `image_seq_length` from the image processor and repeats `<image>` that
  many times; it must equal the vision tower's output tokens (spatial H'*W' + 1 temporal token)
  or the model's placeholder check fails.
- The tokenizer needs an `image_token` (a named extra special token) and `<loc_0..999>`;
  the post-processor raises "Unsupported parse task" unless `post_processor_config` lists the
  parse types `post_process_generation` asks for.
- A random language model never emits `<loc_*>` tokens in a parseable order, which would make
  every detection test vacuous. So the decoder is wired into a "bigram" machine: its
  self-attention and feed-forward outputs and its positional embeddings are zeroed, so the last
  hidden state depends on the previous token only, and the LM head (untied from the input
  embeddings, else editing it would move the states) is solved so that greedy decoding walks
  `TARGET_PHRASES`. Cross-attention is left random: the image still nudges the probabilities
  (hence the scores) without changing the argmax.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import torch
from transformers import (
    AutoProcessor,
    BartConfig,
    BartTokenizer,
    CLIPImageProcessor,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
    Florence2VisionConfig,
)

#: What greedy decoding emits after `</s><s>`, then `</s>`: two phrases with one box each, and
#: the logit margin of each phrase's box tokens. Margin 12 over the ~1,270-token vocabulary gives
#: the box tokens a probability of ~0.99, margin 8 ~0.70: the two box scores straddle 0.85.
#: Every token occurs once, so a bigram table can encode the sequence.
TARGET_PHRASES: tuple[tuple[str, tuple[int, int, int, int], float], ...] = (
    ("person", (100, 50, 600, 900), 12.0),
    ("cat", (700, 10, 990, 400), 8.0),
)
IMAGE_SIZE = 32  # pixels fed to the vision tower (square)
# Vision tower strides 4 then 2 -> (32 / 8)^2 = 16 spatial tokens + 1 temporal token.
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // 8) ** 2 + 1
D_MODEL = 32
SEED = 0
#: Logit margin of every other intended next token (text, `</s>`) over the rest.
MARGIN = 12.0

LOC_TOKENS = [f"<loc_{i}>" for i in range(1000)]
TASK_TOKENS = ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>"]
POST_PROCESSOR_CONFIG = {
    "ocr": {
        "PATTERN": r"(.+?)" + r"<loc_(\d+)>" * 8,
        "AREA_THRESHOLD": 0.0,
    },
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def _byte_vocab() -> dict[str, int]:
    """GPT-2 style byte-level alphabet (every byte is one token; no merges needed)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for b in range(256):
        vocab[chars[b]] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab


def build_tokenizer() -> BartTokenizer:
    """BART (byte-level BPE) tokenizer plus Florence-2's task, location and image tokens."""
    tokenizer = BartTokenizer(
        vocab=_byte_vocab(),
        merges=[],
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_tokens([*TASK_TOKENS, *LOC_TOKENS], special_tokens=True)
    return tokenizer


def build(directory: Path) -> Path:
    """Save a seeded tiny `Florence2ForConditionalGeneration` and its processor into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        image_seq_length=IMAGE_SEQ_LENGTH,
    )
    processor = Florence2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        post_processor_config=POST_PROCESSOR_CONFIG,
    )
    vision = Florence2VisionConfig(
        depths=[1, 1],
        patch_size=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[3, 1],
        patch_prenorm=[False, True],
        embed_dim=[16, 32],
        num_heads=[1, 2],
        num_groups=[1, 2],
        window_size=2,
        drop_path_rate=0.0,
        projection_dim=D_MODEL,
        max_position_embeddings=8,
        max_temporal_embeddings=4,
    )
    text = BartConfig(
        vocab_size=len(tokenizer),
        d_model=D_MODEL,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        tie_word_embeddings=False,
    )
    config = Florence2Config(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.image_token_id,
        tie_word_embeddings=False,
    )
    model = Florence2ForConditionalGeneration(config).eval()
    _wire_bigram_decoder(model, tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    # Fail here, not in a test, if what was saved does not reload offline.
    AutoProcessor.from_pretrained(directory, local_files_only=True)
    Florence2ForConditionalGeneration.from_pretrained(directory, local_files_only=True)
    return directory


def _target_transitions(tokenizer: BartTokenizer) -> list[tuple[int, int, float]]:
    """(previous token, next token, logit margin) for every step of the intended generation."""
    sequence: list[tuple[int, float]] = [
        (tokenizer.eos_token_id, MARGIN),
        (tokenizer.bos_token_id, MARGIN),
    ]
    for phrase, box, box_margin in TARGET_PHRASES:
        sequence += [(i, MARGIN) for i in tokenizer.convert_tokens_to_ids(list(phrase))]
        sequence += [(tokenizer.convert_tokens_to_ids(f"<loc_{b}>"), box_margin) for b in box]
    sequence.append((tokenizer.eos_token_id, MARGIN))
    states = [token for token, _ in sequence[:-1]]
    assert len(set(states)) == len(states), "a bigram table needs each token once"
    return [(prev, nxt, margin) for (prev, _), (nxt, margin) in pairwise(sequence)]


@torch.no_grad()
def _wire_bigram_decoder(
    model: Florence2ForConditionalGeneration, tokenizer: BartTokenizer
) -> None:
    """Make greedy decoding follow `TARGET_PHRASES` whatever the image (see module docstring)."""
    decoder = model.model.language_model.decoder
    decoder.embed_positions.weight.zero_()
    for layer in decoder.layers:
        for linear in (layer.self_attn.out_proj, layer.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
    transitions = _target_transitions(tokenizer)
    hidden = _decoder_states(model, torch.tensor([prev for prev, _, _ in transitions]))
    # Solve lm_head so that logit[next] = margin and every other logit = 0 at each state
    # (exact: fewer states than hidden dimensions).
    targets = torch.zeros(len(transitions), model.lm_head.weight.shape[0])
    for row, (_, nxt, margin) in enumerate(transitions):
        targets[row, nxt] = margin
    model.lm_head.weight.copy_(torch.linalg.lstsq(hidden, targets).solution.T)


def _decoder_states(model: Florence2ForConditionalGeneration, tokens: torch.Tensor) -> torch.Tensor:
    """Last decoder hidden state (N, D) for each token alone, against a blank encoder output."""
    decoder = model.model.language_model.decoder
    out = decoder(
        input_ids=tokens.view(-1, 1),
        encoder_hidden_states=torch.zeros(len(tokens), 1, D_MODEL),
        use_cache=False,
    )
    return out.last_hidden_state[:, 0, :]
