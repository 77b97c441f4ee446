"""A streaming response that always closes its body iterator.

When a client goes away while the response is suspended at a `yield` (waiting to send),
Starlette cancels the send and leaves the async generator suspended: its `finally` (which
ends the tracking session, closes the video and its decode thread) would run only when the
garbage collector finds it. Measured: 160 dropped track streams left 26 threads and ~100 MB.
Closing it here, shielded from the cancellation, frees everything at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            iterator: Any = self.body_iterator
            if isinstance(iterator, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await iterator.aclose()
