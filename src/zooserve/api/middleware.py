"""One ASGI middleware for what every request needs: a request id, the optional API key,
the body size limit, and per-route metrics. Pure ASGI so streamed responses pass untouched."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zooserve.api.metrics import Metrics
from zooserve.logs import request_id

log = logging.getLogger("zooserve.access")
#: Reachable without the API key: liveness for load balancers and the dashboard's page shell.
PUBLIC_PATHS = ("/health", "/ui")


async def _reply(send: Send, status: int, code: str, message: str, rid: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _presented_key(scope: Scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key else None


class ServiceMiddleware:
    def __init__(
        self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, metrics: Metrics
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

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
            # CORS preflights carry no credentials; CORSMiddleware (inside) answers them.
            if self.api_key and method != "OPTIONS" and not path.startswith(PUBLIC_PATHS):
                presented = _presented_key(scope)
                if presented is None or not hmac.compare_digest(presented, self.api_key):
                    status["code"] = 401
                    await _reply(send, 401, "unauthorized", "missing or wrong API key", rid)
                    return
            declared = int(headers.get(b"content-length", b"0") or 0)
            if declared > self.max_body_bytes:
                status["code"] = 413
                await _reply(
                    send,
                    413,
                    "payload_too_large",
                    f"request body is {declared} bytes; the limit is {self.max_body_bytes}",
                    rid,
                )
                return
            received = 0
            started_response = False
            rejected = False

            async def limited_receive() -> Message:
                nonlocal received, rejected
                if rejected:
                    return {"type": "http.disconnect"}
                message = await receive()
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

            await self.app(scope, limited_receive, tagged_send)
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


def _route_template(scope: Scope) -> str:
    """The matched route's template (bounded label values), not the raw path."""
    route: Any = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
