"""One ASGI middleware for what every request needs: a request id, the optional API key,
the checks of request_guards (cross-site browsers, body size by kind, media type, nesting
depth), per-route metrics, and the request's context for the manager
(`request_context.client_gone`). Pure ASGI so streamed responses pass untouched."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zooserve.api.metrics import Metrics
from zooserve.api.request_guards import (
    BODY_METHODS,
    DEFAULT_MAX_JSON_BYTES,
    BodyLimit,
    BodyLimits,
    Refused,
    SameSitePolicy,
    check_media_type,
    declared_length,
    is_json,
    json_nesting_exceeds,
    media_type,
    read_body,
)
from zooserve.core import request_context
from zooserve.core.logs import request_id

log = logging.getLogger("zooserve.access")
#: Reachable without the API key: liveness for load balancers and the dashboard's page shell.
PUBLIC_PATHS = ("/health", "/ui")


async def _reply(send: Send, refusal: Refused, rid: str) -> None:
    error = {"code": refusal.code, "message": refusal.message, "details": {}}
    headers = [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"error": error}).encode()})


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


class _Exchange:
    """One request's messages as the app sees them: the body counted against its limit (a
    chunked body has no Content-Length to refuse up front), every response tagged with the
    request id, and whether the client has gone."""

    def __init__(self, receive: Receive, send: Send, rid: str) -> None:
        self.source, self.client_send, self.rid = receive, send, rid
        self.limit = BodyLimit(0, "max_request_mb")
        self.status = 500  # what the metrics and the access log record
        self.received = 0
        self.started_response = False
        self.rejected = False
        self.body_read = False  # the app has had the whole body: only a disconnect may follow
        self.gone = False  # a disconnect was seen (by the app, or by client_gone)

    async def refuse(self, refusal: Refused) -> None:
        self.status = refusal.status
        await _reply(self.client_send, refusal, self.rid)

    async def receive(self) -> Message:
        if self.rejected or self.gone:
            return {"type": "http.disconnect"}
        message = await self.source()
        if message["type"] == "http.disconnect":
            self.gone = True
            return message
        self.body_read = not message.get("more_body", False)
        self.received += len(message.get("body", b""))
        if self.received > self.limit.max_bytes:
            # Answer 413 now (the app would turn an exception here into a 400 "error parsing
            # the body") and tell the app the client is gone; send() drops what it still sends.
            self.rejected = True
            if not self.started_response:
                await self.refuse(self.limit.exceeded())
            return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.rejected:
            return
        if message["type"] == "http.response.start":
            self.started_response = True
            self.status = message["status"]
            message.setdefault("headers", [])
            message["headers"] = [*message["headers"], (b"x-request-id", self.rid.encode())]
        await self.client_send(message)

    async def client_gone(self) -> bool:
        """Whether the client left, without waiting; False until the app has read the whole
        body, so no body message is ever taken from the app."""
        if not self.gone and self.body_read:
            self.gone = await disconnect_waiting(self.source)
        return self.gone or self.rejected


class ServiceMiddleware:
    """`body_media_types` maps (method, path) of each route with a body to the media types it
    takes; any other declared type is a 415. Keys are literal paths: a body route with a path
    parameter would need a pattern here. Uploads may be up to `max_body_bytes`; every other
    body up to `max_json_bytes`. State-changing requests from browsers on other sites than
    this one and `allowed_origins` are a 403."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body_bytes: int,
        metrics: Metrics,
        max_json_depth: int = 32,
        body_media_types: Mapping[tuple[str, str], frozenset[str]] | None = None,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
        allowed_origins: Collection[str] = (),
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.limits = BodyLimits(max_upload_bytes=max_body_bytes, max_json_bytes=max_json_bytes)
        self.metrics = metrics
        self.max_json_depth = max_json_depth
        self.body_media_types = dict(body_media_types or {})
        self.same_site = SameSitePolicy.from_origins(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        exchange = _Exchange(receive, send, rid)
        started = time.perf_counter()
        try:
            try:
                admitted = await self._admit(scope, headers, exchange)
            except Refused as refusal:
                await exchange.refuse(refusal)
                return
            if not admitted:  # the client left while its body was read
                exchange.status = 499
                return
            settings = (
                request_context.client_gone.set(exchange.client_gone),
                request_context.keep_alive.set(None),  # routes set the body's own
            )
            try:
                await self.app(scope, exchange.receive, exchange.send)
            finally:
                request_context.keep_alive.reset(settings[1])
                request_context.client_gone.reset(settings[0])
        finally:
            self._record(scope, exchange.status, time.perf_counter() - started)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        """Per-route metrics and the access log line."""
        route = _route_template(scope)
        state = scope.get("state")
        model = state.get("model", "-") if isinstance(state, dict) else "-"
        self.metrics.requests.labels(route, scope["method"], str(status), model).inc()
        self.metrics.latency.labels(route, model).observe(elapsed)
        if scope["path"] != "/metrics":
            log.info("%s %s %s %.1f ms", scope["method"], scope["path"], status, elapsed * 1000)

    async def _admit(
        self, scope: Scope, headers: Mapping[bytes, bytes], exchange: _Exchange
    ) -> bool:
        """Key, origin, declared length, media type and (for JSON) the whole body's nesting
        depth; False when the client left while its body was read."""
        method, path = scope["method"], scope["path"]
        # CORS preflights carry no credentials; CORSMiddleware (inside) answers them.
        public = method == "OPTIONS" or path.startswith(PUBLIC_PATHS)
        if self.api_key and not public and not holds_key(scope, self.api_key):
            raise Refused(401, "unauthorized", "missing or wrong API key")
        self.same_site.check(method, headers)
        declared = declared_length(headers)
        content_type = headers.get(b"content-type")
        media = media_type(content_type.decode("latin-1")) if content_type is not None else ""
        accepted = self.body_media_types.get((method, path))
        exchange.limit = self.limits.for_body(media, accepted)
        exchange.limit.check_declared(declared)
        sent = content_type is not None or bool(declared) or b"transfer-encoding" in headers
        check_media_type(path, media, accepted, sent)
        if method not in BODY_METHODS or not is_json(media):
            return True
        body = await read_body(exchange.source, exchange.limit)
        if body is None:
            return False
        # ~10 ms a megabyte: a big body is scanned off the event loop.
        scan = asyncio.to_thread if len(body) > 1 << 20 else _call
        if await scan(json_nesting_exceeds, body, self.max_json_depth):
            raise Refused(
                422,
                "invalid_request",
                f"invalid request: the JSON body nests arrays/objects deeper than "
                f"{self.max_json_depth} levels (max_json_depth)",
            )
        exchange.source = _replay(body, exchange.source)
        return True


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
