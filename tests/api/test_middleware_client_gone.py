"""`request_context.client_gone`, as the middleware sets it for each HTTP request: False
while the client is there (and never a body message taken from the app to find out), True
once it has disconnected; the request's settings end with the request. Plain ASGI: a fake
server hands the middleware its messages, the app says what it saw."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from zooserve.api.metrics import Metrics
from zooserve.api.middleware import ServiceMiddleware
from zooserve.core import request_context

DISCONNECT: Message = {"type": "http.disconnect"}


def http_scope(content_type: bytes) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/work",
        "headers": [(b"content-type", content_type)],
        "state": {},
    }


class Client:
    """The server side of one request: messages are queued by the test (or by the app, to
    model a client leaving mid-request); whatever the app sends is kept."""

    def __init__(self, *messages: Message) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        for message in messages:
            self.queue.put_nowait(message)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return await self.queue.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.queue.put_nowait(DISCONNECT)


async def run(app: Any, client: Client, content_type: bytes) -> None:
    middleware = ServiceMiddleware(app, api_key=None, max_body_bytes=1 << 20, metrics=Metrics())
    await middleware(http_scope(content_type), client.receive, client.send)


async def reply(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("content_type", "chunks"),
    [
        (b"application/octet-stream", [b"ab", b"cd", b"ef"]),  # streamed to the app as it comes
        (b"application/json", [b'{"a":', b" 1}"]),  # read whole by the middleware, replayed
    ],
)
def test_client_gone_is_false_until_the_client_leaves_and_takes_no_body(
    content_type: bytes, chunks: list[bytes]
) -> None:
    seen: list[Any] = []
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    client = Client(*messages)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        gone = request_context.client_gone.get()
        assert gone is not None
        body = b""
        while True:
            seen.append(await gone())  # asked before and between the body's chunks
            message = await receive()
            body += message["body"]
            if not message["more_body"]:
                break
        seen.append(body)
        seen.append(await gone())  # the whole body read, the client still there: nothing waits
        seen.append(await gone())
        client.leave()
        seen.append(await gone())
        seen.append(await gone())  # stays gone
        seen.append(await receive())  # the disconnect client_gone saw is the app's too
        await reply(send)

    asyncio.run(run(app, client, content_type))
    reads = 1 if content_type == b"application/json" else len(chunks)
    assert seen == [False] * reads + [b"".join(chunks), False, False, True, True, DISCONNECT]
    assert client.sent[0]["status"] == 200


def test_a_disconnect_the_app_received_is_client_gone() -> None:
    """The client leaves before the body ended: the app's own read sees it, client_gone too."""
    seen: list[Any] = []
    client = Client({"type": "http.request", "body": b"ab", "more_body": True}, DISCONNECT)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        gone = request_context.client_gone.get()
        assert gone is not None
        seen.append((await receive())["body"])
        seen.append(await gone())  # body unfinished: no look, the disconnect stays queued
        seen.append(await receive())
        seen.append(await gone())

    asyncio.run(run(app, client, b"application/octet-stream"))
    assert seen == [b"ab", False, DISCONNECT, True]


def test_request_settings_end_with_the_request() -> None:
    """Set for the request (the routes set keep_alive), unset once it is answered."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert request_context.keep_alive.get() is None
        request_context.keep_alive.set(0.0)  # as a route does
        await receive()
        await reply(send)

    async def main() -> tuple[Any, Any]:
        client = Client({"type": "http.request", "body": b"x", "more_body": False})
        await run(app, client, b"application/octet-stream")
        return request_context.keep_alive.get(), request_context.client_gone.get()

    assert asyncio.run(main()) == (None, None)
