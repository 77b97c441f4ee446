"""One HTTP request carried over Ray and run through an in-process ASGI app.

The ingress packs what it received (method, path, query, headers, body) into a `Forwarded`;
the replica runs it through the real zooserve app and streams back the response as it is
sent: first a `Start` (status and headers), then the body's chunks. A streamed response
(NDJSON tracking, server-sent events) therefore streams end to end. An upload's body is not
carried: the ingress spools it to shared storage (spool.py) and the replica's app reads it
from there a chunk at a time, so no process holds a whole upload in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO

from starlette.types import ASGIApp, Message

log = logging.getLogger("zooserve.ray")
#: Bytes of a spooled body handed to the app per `receive`.
BODY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Forwarded:
    method: str
    path: str
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    client: tuple[str, int] | None = None
    #: The body, spooled to a file every replica can read (then `body` is empty).
    body_path: str | None = None


@dataclass(frozen=True)
class Start:
    status: int
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Reply:
    """A whole response (for requests answered by every replica, not streamed)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


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
    iterator early (the client left) tells the app its client disconnected. A spooled body
    that cannot be opened raises OSError before anything is yielded."""
    messages: asyncio.Queue[Message | None] = asyncio.Queue()
    closed = asyncio.Event()
    spooled: BinaryIO | None = None
    if request.body_path is not None:
        spooled = await asyncio.to_thread(open, request.body_path, "rb")
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if spooled is not None and not delivered:
            chunk = await asyncio.to_thread(spooled.read, BODY_CHUNK)
            delivered = len(chunk) < BODY_CHUNK
            return {"type": "http.request", "body": chunk, "more_body": not delivered}
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
        if spooled is not None:
            spooled.close()


async def collect(app: ASGIApp, request: Forwarded) -> Reply:
    """The app's whole response to `request`."""
    start, chunks = Start(500, []), []
    async for item in run_asgi(app, request):
        if isinstance(item, Start):
            start = item
        else:
            chunks.append(item)
    return Reply(start.status, start.headers, b"".join(chunks))
