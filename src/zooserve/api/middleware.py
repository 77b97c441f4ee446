"""One ASGI middleware for what every request needs: a request id, the optional API key,
the body's size, media type and nesting depth, per-route metrics, and the request's context
for the manager (`request_context.client_gone`). Pure ASGI so streamed responses pass
untouched."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zooserve import request_context
from zooserve.api.metrics import Metrics
from zooserve.logs import request_id

log = logging.getLogger("zooserve.access")
#: Reachable without the API key: liveness for load balancers and the dashboard's page shell.
PUBLIC_PATHS = ("/health", "/ui")
JSON = "application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: A JSON string, or an unterminated one up to the end: linear, never backtracks per quote.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


async def _reply(send: Send, status: int, code: str, message: str, rid: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def holds_key(scope: Scope, key: str) -> bool:
    """Whether the request presents `key` (`Authorization: Bearer` or `X-API-Key`), compared
    in constant time as bytes: the raw header (Starlette's latin-1) against the key's UTF-8."""
    presented = _presented_key(scope)
    return presented is not None and hmac.compare_digest(
        presented.encode("latin-1"), key.encode("utf-8")
    )


def _presented_key(scope: Scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key else None


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text opens more than `limit` arrays/objects inside each other.

    Counted on the bytes, outside strings, before any parser recurses (a parser's own limit
    is a RecursionError). C-speed passes: strings cut out, brackets kept, depth by cumsum.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    codes = np.frombuffer(brackets, np.uint8)
    depth = 0
    for start in range(0, len(codes), 1 << 20):
        part = codes[start : start + (1 << 20)]
        running = np.cumsum(np.where((part == ord("[")) | (part == ord("{")), 1, -1)) + depth
        if int(running.max()) > limit:
            return True
        depth = int(running[-1])
    return False


def _content_length(headers: Mapping[bytes, bytes]) -> int | None:
    """The declared length; None when absent. ValueError for anything but a plain number."""
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(text)
    return int(text)


class _Refused(Exception):
    """A request answered by the middleware itself, before the app sees it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ServiceMiddleware:
    """`body_media_types` maps (method, path) of each route with a body to the media types it
    takes; any other declared type is a 415, so a cross-site form (text/plain,
    form-urlencoded) cannot reach a JSON route without a CORS preflight. Keys are literal
    paths: a body route with a path parameter would need a pattern here."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body_bytes: int,
        metrics: Metrics,
        max_json_depth: int = 32,
        body_media_types: Mapping[tuple[str, str], frozenset[str]] | None = None,
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.max_json_depth = max_json_depth
        self.body_media_types = dict(body_media_types or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        path: str = scope["path"]
        method: str = scope["method"]
        status = {"code": 500}
        started = time.perf_counter()
        try:
            try:
                admitted = await self._admit(scope, headers, receive)
            except _Refused as refusal:
                status["code"] = refusal.status
                await _reply(send, refusal.status, refusal.code, refusal.message, rid)
                return
            if admitted is None:  # the client left while its body was read
                status["code"] = 499
                return
            receive = admitted
            received = 0
            started_response = False
            rejected = False
            body_read = False  # the app has had the whole body: only a disconnect may follow
            gone = False  # a disconnect was seen (by the app, or by client_gone)

            async def limited_receive() -> Message:
                nonlocal received, rejected, body_read, gone
                if rejected or gone:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    return message
                body_read = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # A body without Content-Length ran over: answer 413 now (the app would
                    # turn an exception here into a 400 "error parsing the body") and tell the
                    # app the client is gone; tagged_send drops whatever it still sends.
                    rejected = True
                    if not started_response:
                        status["code"] = 413
                        await _reply(
                            send,
                            413,
                            "payload_too_large",
                            f"request body exceeds {self.max_body_bytes} bytes",
                            rid,
                        )
                    return {"type": "http.disconnect"}
                return message

            async def tagged_send(message: Message) -> None:
                nonlocal started_response
                if rejected:
                    return
                if message["type"] == "http.response.start":
                    started_response = True
                    status["code"] = message["status"]
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                await send(message)

            async def client_gone() -> bool:
                """Whether the client left, without waiting; False until the app has read the
                whole body, so no body message is ever taken from the app."""
                nonlocal gone
                if not gone and body_read:
                    gone = await disconnect_waiting(receive)
                return gone or rejected

            settings = (
                request_context.client_gone.set(client_gone),
                request_context.keep_alive.set(None),  # routes set the body's own
            )
            try:
                await self.app(scope, limited_receive, tagged_send)
            finally:
                request_context.keep_alive.reset(settings[1])
                request_context.client_gone.reset(settings[0])
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            model = (
                scope.get("state", {}).get("model", "-")
                if isinstance(scope.get("state"), dict)
                else "-"
            )
            self.metrics.requests.labels(route, method, str(status["code"]), model).inc()
            self.metrics.latency.labels(route, model).observe(elapsed)
            if path != "/metrics":
                log.info("%s %s %s %.1f ms", method, path, status["code"], elapsed * 1000)
            request_id.reset(token)

    async def _admit(
        self, scope: Scope, headers: Mapping[bytes, bytes], receive: Receive
    ) -> Receive | None:
        """Key, declared length, media type and (for JSON) the whole body's nesting depth."""
        method, path = scope["method"], scope["path"]
        # CORS preflights carry no credentials; CORSMiddleware (inside) answers them.
        public = method == "OPTIONS" or path.startswith(PUBLIC_PATHS)
        if self.api_key and not public and not holds_key(scope, self.api_key):
            raise _Refused(401, "unauthorized", "missing or wrong API key")
        try:
            declared = _content_length(headers)
        except ValueError:
            raise _Refused(
                400, "bad_request", "Content-Length must be a non-negative integer"
            ) from None
        if declared is not None and declared > self.max_body_bytes:
            raise _Refused(
                413,
                "payload_too_large",
                f"request body is {declared} bytes; the limit is {self.max_body_bytes}",
            )
        content_type = headers.get(b"content-type")
        media = media_type(content_type.decode("latin-1")) if content_type is not None else ""
        accepted = self.body_media_types.get((method, path))
        if accepted is not None:
            has_body = bool(declared) or b"transfer-encoding" in headers
            if (content_type is not None or has_body) and not (
                media in accepted or (is_json(media) and JSON in accepted)
            ):
                raise _Refused(
                    415,
                    "unsupported_media_type",
                    f"{path} takes {' or '.join(sorted(accepted))}, "
                    f"not {media or 'a body without Content-Type'}",
                )
        if method not in BODY_METHODS or not is_json(media):
            return receive
        body = await self._read_body(receive)
        if body is None:
            return None
        # ~10 ms a megabyte: a big body is scanned off the event loop.
        scan = asyncio.to_thread if len(body) > 1 << 20 else _call
        if await scan(json_nesting_exceeds, body, self.max_json_depth):
            raise _Refused(
                422,
                "invalid_request",
                f"invalid request: the JSON body nests arrays/objects deeper than "
                f"{self.max_json_depth} levels (max_json_depth)",
            )
        return _replay(body, receive)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (None if the client left), refused once it runs over the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Refused(
                    413, "payload_too_large", f"request body exceeds {self.max_body_bytes} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _call(function: Callable[..., bool], *args: Any) -> bool:
    return function(*args)


async def disconnect_waiting(receive: Receive) -> bool:
    """Whether a disconnect is already waiting in `receive`, without waiting for one (what
    Starlette's `Request.is_disconnected` does). Only once the body was read: any other
    message taken here would be lost to the app."""
    message: Message = {}
    with anyio.CancelScope() as scope:
        scope.cancel()
        message = await receive()
    return message.get("type") == "http.disconnect"


def _replay(body: bytes, receive: Receive) -> Receive:
    """The app reads the already-read body once, then the client's own messages
    (disconnects) as they come."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _route_template(scope: Scope) -> str:
    """The matched route's template (bounded label values), not the raw path."""
    route: Any = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
