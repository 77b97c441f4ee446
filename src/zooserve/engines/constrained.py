"""Grammar-constrained decoding for the local engine: the answer is JSON valid for a schema.

Why xgrammar (rather than outlines or lm-format-enforcer):
- It is the grammar backend SGLang and vLLM use by default, so the local fallback enforces the
  same JSON-schema subset (maxLength, maxItems, enum, $ref, anyOf) as the primary engines: one
  schema behaves the same on every engine of the failover chain.
- It compiles a schema to a pushdown automaton once, with token masks precomputed for the
  context-independent part of the vocabulary; a mask costs microseconds a token, which keeps the
  constraint off the critical path even on the CPU. outlines compiles schemas to regex/FSM
  indexes whose build time grows quickly with schema size (seconds for nested schemas) and pulls
  in a larger dependency tree; lm-format-enforcer walks a character-level parser over a token
  trie in Python at every step, which is slower per token and covers less of JSON Schema.
- It ships as one wheel with a small C++ core and an HF-transformers logits-processor contract.

A grammar alone does not promise termination: a model (a random one certainly) can write a
string forever. So the processor also *finishes* the object: once the tokens left are no more
than the schema's shortest completion (plus a margin), it picks, among the tokens the grammar
allows, the one that closes the most (stop token, `}`, `]`, `"`, `,`), so every answer ends as a
complete, schema-valid object within `max_new_tokens`.
"""

from __future__ import annotations

import json
from typing import Any, cast

import torch
import xgrammar as xgr
from transformers import LogitsProcessor

#: Outside a string: characters that close JSON structures, most closing first. Inside a string
#: only its closing quote matters (`}` there would be string content, not a close).
CLOSING_CHARS = ("}", "]", ",", '"')
#: Tokens kept free beyond the shortest completion (nesting to unwind, multi-char keys).
FINISH_MARGIN = 16


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a schema node stands for ($ref followed, anyOf/oneOf expanded)."""
    if "$ref" in schema:
        return _resolve(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [alt for option in schema[key] for alt in _resolve(option, defs)]
    return [schema]


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(", ", ": ")))


def minimal_json(schema: dict[str, Any], defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """The shortest instance of `schema`: required keys only, shortest strings, arrays of
    `minItems` items, the shortest enum value or alternative."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if depth > 32:
        return None
    options = []
    for node in _resolve(schema, defs):
        options.append(_minimal_node(node, defs, depth))
    return min(options, key=_size)


def _minimal_node(node: dict[str, Any], defs: dict[str, Any], depth: int) -> Any:
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return min(node["enum"], key=_size)
    kind = node.get("type", "object")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        props = node.get("properties", {})
        return {
            k: minimal_json(props.get(k, {}), defs, depth + 1) for k in node.get("required", [])
        }
    if kind == "array":
        return [minimal_json(node.get("items", {}), defs, depth + 1)] * int(node.get("minItems", 0))
    if kind == "string":
        return "x" * int(node.get("minLength", 0))
    if kind in ("number", "integer"):
        return node.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def _open_extra(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> int:
    """Characters beyond the shortest instance needed to finish from *inside* this node: along
    the one path of open containers, each array may hold one more item, each object one more
    (optional) key, whose own insides may be open in turn."""
    if depth > 32:
        return 0
    worst = 0
    for node in _resolve(schema, defs):
        kind = node.get("type", "object")
        if kind == "array":
            items = node.get("items", {})
            item = _size(minimal_json(items, defs, depth + 1)) + 2  # ", " before it
            worst = max(worst, item + _open_extra(items, defs, depth + 1))
        elif kind == "object":
            required = set(node.get("required", []))
            for key, prop in node.get("properties", {}).items():
                extra = _open_extra(prop, defs, depth + 1)
                if key not in required:  # an optional key written: it must be finished too
                    extra += _size(key) + 4 + _size(minimal_json(prop, defs, depth + 1))
                worst = max(worst, extra)
    return worst


def finish_reserve(schema: dict[str, Any]) -> int:
    """Tokens to keep for finishing from any point (one byte-level token per character, the
    worst case): the shortest instance, plus the worst path of open containers, plus a margin."""
    defs = schema.get("$defs", {})
    return _size(minimal_json(schema)) + _open_extra(schema, defs) + FINISH_MARGIN


class SchemaLogitsProcessor(LogitsProcessor):
    """Masks every token the schema's grammar forbids (batch size 1), bans special tokens inside
    the answer, and finishes the object when the token budget runs low.

    Use one instance per `generate()` call (the matcher carries the parse state).
    """

    def __init__(
        self,
        grammar: xgr.CompiledGrammar,
        *,
        prompt_length: int,
        max_new_tokens: int,
        reserve: int,
        closing_token_ids: list[int],
        quote_token_id: int | None,
        banned_token_ids: list[int],
    ) -> None:
        self.matcher = xgr.GrammarMatcher(grammar)
        self.vocab_size = grammar.tokenizer_info.vocab_size
        self.bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.reserve = reserve
        self.closing = [*self.matcher.stop_token_ids, *closing_token_ids]
        self.quote = quote_token_id
        self.banned = torch.tensor(banned_token_ids, dtype=torch.long)
        self.token_bytes = grammar.tokenizer_info.decoded_vocab
        self.string = _StringState()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_length
        if generated > 0 and not self.matcher.is_terminated():
            token = int(input_ids[0, -1])
            if not self.matcher.accept_token(token):
                raise RuntimeError(f"token {token} broke the grammar: the mask was not applied")
            self.string.feed(self.token_bytes[token])
        if self.matcher.is_terminated():
            return scores
        self.matcher.fill_next_token_bitmask(self.bitmask)
        # The mask covers the tokenizer's vocabulary; padded logit columns beyond it stay banned.
        masked = scores[:, : self.vocab_size].float().cpu()
        xgr.apply_token_bitmask_inplace(masked, self.bitmask)
        out = torch.full_like(scores, float("-inf"))
        out[:, : self.vocab_size] = masked.to(scores.device, scores.dtype)
        if len(self.banned):
            out[:, self.banned.to(scores.device)] = float("-inf")
        if self.max_new_tokens - generated <= self.reserve:
            closing = self._closing_token()
            if closing is not None:
                forced = torch.full_like(scores, float("-inf"))
                forced[:, closing] = 0.0
                return cast(torch.FloatTensor, forced)
        return cast(torch.FloatTensor, out)

    def _closing_token(self) -> int | None:
        """The allowed token that closes the most; None to let the (masked) model choose."""
        if self.string.escaped:  # after a backslash a quote is content: finish the escape first
            return None
        candidates = [self.quote] if self.string.inside else self.closing
        for token in candidates:
            if token is not None and token < self.vocab_size and self._allowed(token):
                return token
        return None

    def _allowed(self, token: int) -> bool:
        word = int(self.bitmask[0, token // 32])
        return bool((word >> (token % 32)) & 1)

    @property
    def completed(self) -> bool:
        return bool(self.matcher.is_completed() or self.matcher.is_terminated())


class _StringState:
    """Whether the JSON written so far ends inside a string (and right after a backslash).

    Bytes suffice: `"` and `\\` never occur inside multi-byte UTF-8 sequences.
    """

    def __init__(self) -> None:
        self.inside = False
        self.escaped = False

    def feed(self, data: bytes) -> None:
        for byte in data:
            if not self.inside:
                self.inside = byte == 0x22
            elif self.escaped:
                self.escaped = False
            elif byte == 0x5C:
                self.escaped = True
            elif byte == 0x22:
                self.inside = False


def single_token_ids(tokenizer: Any, characters: tuple[str, ...]) -> list[int]:
    """Ids of tokens that are exactly one of `characters`, in the given order."""
    ids = []
    for char in characters:
        encoded = tokenizer.encode(char, add_special_tokens=False)
        if len(encoded) == 1:
            ids.append(int(encoded[0]))
    return ids
