"""What crosses the engine boundary: a chat request (text + RGB images, optional output type)
and the generation that answers it, plus how an engine failed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

#: RGB uint8 image, shape (H, W, 3).
Image = np.ndarray


@dataclass(frozen=True, eq=False)
class ChatMessage:
    """One chat turn. Images come before the text in the rendered message (frames, then ask)."""

    role: str  # system | user | assistant
    text: str
    images: tuple[Image, ...] = ()
    #: Optional caption per image (e.g. "frame 12 at 0.50 s"), placed just before it.
    captions: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """A chat completion for the model named `model` (its key under `models:`).

    `output` is the pydantic model the answer must satisfy: its JSON schema goes to engines that
    enforce schemas, and every answer is parsed and validated against it.
    """

    model: str
    messages: tuple[ChatMessage, ...]
    output: type[BaseModel] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None

    @property
    def schema(self) -> dict[str, Any] | None:
        """The output type's JSON schema without pydantic's titles (noise in a prompt)."""
        return None if self.output is None else _untitled(self.output.model_json_schema())

    @property
    def schema_name(self) -> str:
        return self.output.__name__ if self.output is not None else "response"

    @property
    def images(self) -> int:
        return sum(len(m.images) for m in self.messages)


@dataclass(frozen=True)
class EngineFailure:
    """Why one engine did not answer. `retryable`: down, timed out, 5xx, overloaded."""

    engine: str
    reason: str
    retryable: bool = True
    status: int | None = None  # HTTP status (remote) or the ZooError's status (local)
    code: str | None = None  # the ZooError's code, for local engines

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "reason": self.reason, "status": self.status}


class EngineError(Exception):
    """Raised by one engine; the pool records it and asks the next engine."""

    def __init__(self, failure: EngineFailure) -> None:
        super().__init__(f"{failure.engine}: {failure.reason}")
        self.failure = failure


@dataclass
class Generation:
    """An engine's answer. `data` is the validated object when an output type was asked and the
    text satisfied it, else None (`invalid_reason` says why)."""

    text: str
    model: str
    engine: str
    seconds: float
    finish_reason: str | None = None
    data: BaseModel | None = None
    invalid_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    #: Engines that failed before this one answered, in order.
    failures: list[EngineFailure] = field(default_factory=list)


def _untitled(node: Any) -> Any:
    """Drop `title` annotations (string values; a property named "title" maps to a dict)."""
    if isinstance(node, dict):
        return {
            k: _untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_output(text: str, output: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    """Parse `text` as JSON (tolerating a ``` fence or prose around one object) and validate it
    strictly against `output`. Returns (object, None) or (None, why it failed).

    Control characters inside strings are accepted (`strict=False`): grammar-constrained decoders
    may emit raw bytes there, and they re-serialise as escapes.
    """
    candidate = text.strip()
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1)
    try:
        data = json.loads(candidate, strict=False)
    except json.JSONDecodeError:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start < 0 or end <= start:
            return None, "the output is not JSON"
        try:
            data = json.loads(candidate[start : end + 1], strict=False)
        except json.JSONDecodeError as exc:
            return None, f"the output is not valid JSON: {exc.msg} at char {exc.pos}"
    try:
        return output.model_validate(data, strict=True), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return None, f"the output does not match the schema: {problems}"
