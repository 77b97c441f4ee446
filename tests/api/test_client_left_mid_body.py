"""A client that leaves while its body is still being read is a 499 `request_cancelled` on any
route that reads a body (the Ray ingress spools uploads with `request.stream()`), not a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request

from zooserve.api.errors import install_error_handlers


def app_reading_bodies() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/stream")
    async def stream(request: Request) -> dict[str, int]:
        return {"bytes": sum([len(chunk) async for chunk in request.stream()])}

    @app.post("/body")
    async def body(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


async def call_leaving_mid_body(app: FastAPI, path: str) -> tuple[int, dict[str, Any]]:
    """One POST whose client sends a first chunk, then disconnects."""
    messages = iter(
        [
            {"type": "http.request", "body": b"x" * 1024, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/octet-stream")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "root_path": "",
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


async def test_a_client_leaving_mid_stream_is_a_499_not_a_500() -> None:
    for path in ("/stream", "/body"):
        status, body = await call_leaving_mid_body(app_reading_bodies(), path)
        assert status == 499, (path, body)
        assert body["error"]["code"] == "request_cancelled"
