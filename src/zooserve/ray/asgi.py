"""One HTTP request carried over Ray and run through an in-process ASGI app.

The ingress packs what it received (method, path, query, headers, body) into a `Forwarded`;
the replica runs it through the real zooserve app and streams back the response as it is
sent: first a `Start` (status and headers), then the body's chunks. A streamed response
(NDJSON tracking, server-sent events) therefore streams end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message

log = logging.getLogger("zooserve.ray")


@dataclass(frozen=True)
class Forwarded:
    method: str
    path: str
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    client: tuple[str, int] | None = None


@dataclass(frozen=True)
class Start:
    status: int
    headers: list[tuple[bytes, bytes]]


def scope_for(request: Forwarded) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode("latin-1", "replace"),
        "root_path": "",
        "query_string": request.query,
        "headers": list(request.headers),
        "client": request.client,
        "server": ("zooserve-replica", 0),
        "state": {},
    }


async def run_asgi(app: ASGIApp, request: Forwarded) -> AsyncIterator[Start | bytes]:
    """Yield the app's response to `request`: a Start, then body chunks. Closing the
    iterator early (the client left) tells the app its client disconnected."""
    messages: asyncio.Queue[Message | None] = asyncio.Queue()
    closed = asyncio.Event()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await closed.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    async def serve() -> None:
        try:
            await app(scope_for(request), receive, send)
        except Exception:  # already answered with the JSON 500 by the app's handlers
            log.debug("app raised after answering %s %s", request.method, request.path)
        finally:
            await messages.put(None)

    task = asyncio.create_task(serve())
    try:
        while (message := await messages.get()) is not None:
            if message["type"] == "http.response.start":
                yield Start(message["status"], [tuple(h) for h in message.get("headers", [])])
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    break
    finally:
        closed.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        if not task.done():
            task.cancel()
