"""OpenAI-compatible engines (SGLang, vLLM, any /v1/chat/completions server) through the `openai`
client. Failover across engines lives in pool.py; this module asks one engine and says precisely
why it did not answer (down, timed out, HTTP status) so the pool can ask the next one.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from abc import ABC, abstractmethod
from typing import Any

import httpx
import openai
from PIL import Image as PILImage

from zooserve.catalog.engines import EngineSpec
from zooserve.core.redaction import clip_upstream, redact_text, register_secrets
from zooserve.engines.types import (
    ChatMessage,
    EngineError,
    EngineFailure,
    Generation,
    GenerationRequest,
    Image,
    parse_output,
)

#: Statuses that mean "this request is wrong for any engine" rather than "this engine is unwell".
REJECTED_STATUSES = frozenset({400, 413, 422})
HEALTH_PATHS = ("/health", "/v1/models")


class Engine(ABC):
    """One language engine. `generate` raises EngineError (never anything else) on failure."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.secrets = spec.secrets()
        register_secrets(self.secrets)

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation: ...

    @abstractmethod
    async def probe(self) -> str:
        """Check the engine answers; returns a short detail, raises EngineError if it does not."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def fail(
        self, reason: str, *, retryable: bool = True, status: int | None = None
    ) -> EngineError:
        """A failure whose reason hides every secret: reasons quote upstream text and URLs."""
        reason = redact_text(reason, self.secrets)
        return EngineError(EngineFailure(self.name, reason, retryable, status))


def schema_instruction(request: GenerationRequest) -> str:
    """The schema in words, for every engine: constrained decoders need it to write sensible
    values, and engines that cannot enforce schemas need it to try."""
    if request.output is None:
        return ""
    schema = json.dumps(request.schema, separators=(",", ":"))
    return (
        "\n\nAnswer with one JSON object and nothing else. It must match this JSON schema:\n"
        f"{schema}"
    )


def image_data_url(image: Image, quality: int = 90) -> str:
    """RGB uint8 (H, W, 3) -> `data:image/jpeg;base64,...` (what OpenAI-style servers accept)."""
    buffer = io.BytesIO()
    PILImage.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """Chat messages in the OpenAI wire format; the schema instruction ends the system turn."""
    messages: list[dict[str, Any]] = []
    instruction = schema_instruction(request)
    has_system = any(m.role == "system" for m in request.messages)
    if instruction and not has_system:
        messages.append({"role": "system", "content": instruction.strip()})
    for message in request.messages:
        text = message.text + instruction if message.role == "system" else message.text
        messages.append({"role": message.role, "content": _content(message, text)})
    return messages


def _content(message: ChatMessage, text: str) -> str | list[dict[str, Any]]:
    if not message.images:
        return text
    parts: list[dict[str, Any]] = []
    for index, image in enumerate(message.images):
        if index < len(message.captions):
            parts.append({"type": "text", "text": message.captions[index]})
        parts.append({"type": "image_url", "image_url": {"url": image_data_url(image)}})
    parts.append({"type": "text", "text": text})
    return parts


class OpenAIEngine(Engine):
    """An engine behind an OpenAI-compatible HTTP API.

    Args:
        spec: the engine's config entry.
        served_names: zooserve model name -> the name the engine serves it under.
    """

    def __init__(self, spec: EngineSpec, served_names: dict[str, str]) -> None:
        super().__init__(spec)
        self.served_names = served_names
        api_key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
        self.client = openai.AsyncOpenAI(
            base_url=spec.api_url,
            api_key=api_key or "EMPTY",
            timeout=spec.timeout_s,
            max_retries=0,  # failover is the retry
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.http = httpx.AsyncClient(base_url=spec.root_url, headers=headers)

    async def close(self) -> None:
        await self.client.close()
        await self.http.aclose()

    async def generate(self, request: GenerationRequest) -> Generation:
        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": self.served_names.get(request.model, request.model),
            # JPEG-encoding dozens of frames takes a while: off the event loop.
            "messages": await asyncio.to_thread(openai_messages, request),
            "max_tokens": request.max_tokens or self.spec.max_tokens,
            "temperature": self.spec.temperature
            if request.temperature is None
            else request.temperature,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.output is not None and self.spec.structured_mode != "prompt":
            kwargs["response_format"] = self._response_format(request)
        try:
            response = await self.client.chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:
            raise self.fail(f"timed out after {self.spec.timeout_s:g} s") from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise self.fail(f"unreachable at {self.spec.base_url}: {cause}") from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            raise self.fail(
                f"HTTP {status}: {_error_message(exc)}",
                retryable=status not in REJECTED_STATUSES,
                status=status,
            ) from exc
        except openai.OpenAIError as exc:  # malformed responses and the like
            raise self.fail(f"{type(exc).__name__}: {clip_upstream(str(exc))}") from exc
        if not response.choices:
            raise self.fail("the response has no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        generation = Generation(
            text=text,
            model=request.model,
            engine=self.name,
            seconds=time.perf_counter() - started,
            finish_reason=choice.finish_reason,
            usage=_usage(response.usage),
        )
        if request.output is not None:
            generation.data, generation.invalid_reason = parse_output(text, request.output)
        return generation

    def _response_format(self, request: GenerationRequest) -> dict[str, Any]:
        if self.spec.structured_mode == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": request.schema, "strict": True},
        }

    async def probe(self) -> str:
        timeout = min(5.0, self.spec.timeout_s)
        last = "no health endpoint answered"
        for path in HEALTH_PATHS:
            try:
                response = await self.http.get(path, timeout=timeout)
            except httpx.TimeoutException as exc:
                raise self.fail(f"health probe timed out after {timeout:g} s") from exc
            except httpx.HTTPError as exc:
                raise self.fail(f"unreachable at {self.spec.base_url}: {exc}") from exc
            if response.status_code == 200:
                return f"GET {path} 200"
            last = f"GET {path} -> HTTP {response.status_code}"
            if response.status_code != 404:  # 404: try the next path
                break
        raise self.fail(f"unhealthy: {last}")


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    return {
        key: int(getattr(usage, key))
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if getattr(usage, key, None) is not None
    }


def _error_message(exc: openai.APIStatusError) -> str:
    """The engine's own words for an error status, secret-shaped values hidden and bounded."""
    body = exc.body
    detail: Any = None
    if isinstance(body, dict):
        detail = body.get("error", body.get("detail", body.get("message")))
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
    return clip_upstream(str(detail or exc.message))
