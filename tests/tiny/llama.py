"""Tiny Llama language models (real `LlamaForCausalLM`, ~60k parameters) with an offline tokenizer.

Two variants, both saved with `save_pretrained` and loaded by path:
- `build(directory)`: random weights. Its output is noise, so it is what the local engine's
  constrained decoding must tame into schema-valid JSON.
- `build_scripted(directory, reply)`: greedy decoding answers `reply`, whatever the prompt. Every
  layer's attention and MLP output projections are zeroed, so the last hidden state depends on
  the current token only (a bigram machine); `reply` is one added token, and the untied LM head
  is set so that the chat template's `<|assistant|>` token is followed by the reply token, then
  by EOS. A real server (`transformers serve`) then answers with known JSON, which makes the
  pipeline's parsing, validation and merging observable end to end.

The tokenizer is byte-level BPE without merges (every byte is a token), with special tokens for
the chat roles and an `<image>` placeholder (used by the Llava variant in `llava.py`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

SEED = 0
HIDDEN = 32
SPECIAL_TOKENS = [
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<image>",
]
#: Images become `<image>` placeholders; everything else is role-tagged text.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
#: Logit margin of the scripted next token over every other token.
MARGIN = 30.0


def build_tokenizer(extra_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE tokenizer (256 byte tokens after the specials), plus `extra_tokens`."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        model_max_length=4096,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": SPECIAL_TOKENS[4:]}, replace_extra_special_tokens=False
    )
    if extra_tokens:
        tokenizer.add_tokens(extra_tokens)  # normal (not special): decoding keeps them
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def text_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def build(directory: Path) -> Path:
    """Save a seeded random tiny `LlamaForCausalLM` and its tokenizer into `directory`."""
    tokenizer = build_tokenizer()
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(text_config(tokenizer)).eval()
    return _save(directory, model, tokenizer)


def build_scripted(directory: Path, reply: str) -> Path:
    """Save a tiny Llama whose greedy reply to any chat is exactly `reply` (module docstring)."""
    tokenizer = build_tokenizer([reply])
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(text_config(tokenizer)).eval()
    script_replies(model, model.model, tokenizer, reply)
    return _save(directory, model, tokenizer)


@torch.no_grad()
def script_replies(
    model: PreTrainedModel,
    decoder: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    reply: str,
) -> None:
    """Wire `decoder` (a LlamaModel) and `model.lm_head` so `<|assistant|>` -> reply -> EOS."""
    for layer in decoder.layers:  # type: ignore[union-attr]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    reply_token = tokenizer.convert_tokens_to_ids(reply)
    assert reply_token != tokenizer.unk_token_id, "the reply must be one added token"
    states = torch.tensor([assistant, reply_token])
    hidden = decoder.norm(decoder.embed_tokens(states))  # type: ignore[operator, union-attr]
    targets = torch.zeros(2, model.lm_head.weight.shape[0])  # type: ignore[union-attr, index]
    targets[0, reply_token] = MARGIN
    targets[1, tokenizer.eos_token_id] = MARGIN
    model.lm_head.weight.copy_(torch.linalg.lstsq(hidden, targets).solution.T)  # type: ignore[union-attr, operator]


def _save(directory: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.generation_config.do_sample = False
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    AutoTokenizer.from_pretrained(directory, local_files_only=True)  # fail here, not in a test
    return directory
