"""Calling a replica as a stream: the first item is the response's Start, then its body.

A replica that dies before answering is a 503 `replica_unavailable` (after `tries`); one that
dies midway cuts the body short: `Body.complete` stays False and an NDJSON body ends with an
error line, as a track that fails midway does, so a client can tell a cut stream from a
finished one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from starlette.types import Receive, Scope, Send

from zooserve.api.streaming import ClosingStreamingResponse
from zooserve.core.errors import ZooError
from zooserve.ray.asgi import Forwarded, Start

log = logging.getLogger("zooserve.ray")
RETRY_AFTER_S = 1
NDJSON = b"application/x-ndjson"


class ReplicaUnavailable(ZooError):
    status, code = 503, "replica_unavailable"


class Body:
    """The rest of a replica's answer; `complete` stays False when the replica died midway
    (the status line was already sent: the body is cut short, and an NDJSON body ends with
    an error line)."""

    def __init__(self, stream: Any, request: Forwarded, start: Start) -> None:
        self.stream, self.request, self.complete = stream, request, False
        self.ndjson = any(
            k.lower() == b"content-type" and v.startswith(NDJSON) for k, v in start.headers
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        ended = b"\n"
        try:
            async for chunk in self.stream:
                yield chunk
                ended = chunk[-1:] or ended
        except (RayError, RayServeException) as exc:
            log.warning("%s %s: replica failed mid-body: %r", *self._what(), exc)
            if self.ndjson:
                yield (b"" if ended == b"\n" else b"\n") + cut_line(exc)
            return
        self.complete = True

    def _what(self) -> tuple[str, str]:
        return self.request.method, self.request.path


class Forwarder:
    """Calls the replicas' `handle` as a stream: the first item is the response's Start."""

    def __init__(self, replicas: Any) -> None:
        self.replicas = replicas

    async def open(
        self, request: Forwarded, model: str | None, tries: int = 1
    ) -> tuple[Start, Body]:
        last: BaseException | None = None
        for _ in range(tries):
            options: dict[str, Any] = {"stream": True}
            if model:
                options["multiplexed_model_id"] = model
            stream = self.replicas.options(**options).handle.remote(request)
            try:
                first = await stream.__anext__()
            except (RayError, RayServeException, StopAsyncIteration) as exc:
                log.warning("%s %s: replica failed: %r", request.method, request.path, exc)
                last = exc
                continue
            return first, Body(stream, request, first)
        raise ReplicaUnavailable(
            "the replica serving this request stopped before answering; retry",
            {"reason": type(last).__name__},
            retry_after=RETRY_AFTER_S,
        )

    async def fetch(
        self, request: Forwarded, model: str | None, tries: int
    ) -> tuple[int, dict[str, Any]]:
        """The whole JSON answer (for jobs): re-run on another replica if one dies midway."""
        for attempt in range(tries):
            start, body = await self.open(request, model, tries)
            chunks = [chunk async for chunk in body]
            if body.complete:
                return start.status, json.loads(b"".join(chunks) or b"{}")
            log.warning("%s: replica died mid-answer (try %d)", request.path, attempt + 1)
        raise ReplicaUnavailable("replicas kept failing; retry", retry_after=RETRY_AFTER_S)


def cut_line(exc: BaseException) -> bytes:
    """The last line of an NDJSON stream whose replica died midway."""
    error = {
        "code": "replica_unavailable",
        "message": "the replica serving this stream stopped; the stream is incomplete",
        "details": {"reason": type(exc).__name__},
    }
    return json.dumps({"type": "error", "error": error}, separators=(",", ":")).encode() + b"\n"


class ForwardedResponse(ClosingStreamingResponse):
    """A replica's answer streamed to the client; `on_close` runs once it is over, however
    it ended (the client left, the replica died): it removes a spooled upload."""

    on_close: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()
