"""The directory: one small detached Ray actor where each replica reports its views, and
through which the ingress can ask one named replica.

Ray Serve routes a call to one replica and offers no broadcast, so the ingress cannot ask
every replica; instead each replica reports (replica.py, twice a second) and the ingress
reads the reports that are fresh. A replica that died stops reporting and drops out after
`STALE_S`. For what must reach every replica (`/models/unload`), `ask` leaves a request in
that replica's inbox, which the replica long-polls (`inbox`) and answers (`answer`).
Detached, so it outlives whichever replica created it; one per Serve app. An async actor:
a long poll or an `ask` waiting for its answer holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import ray

from zooserve.ray.asgi import Forwarded, Reply

#: A report older than this is a replica that is gone (or stuck).
STALE_S = 3.0


@ray.remote(num_cpus=0)
class Directory:
    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}
        self.inboxes: dict[str, list[tuple[str, Forwarded]]] = {}
        self.arrived: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, asyncio.Future[Reply]] = {}

    def report(self, replica: str, view: dict[str, Any]) -> None:
        self.reports[replica] = {**view, "replica": replica, "reported_at": time.time()}

    def forget(self, replica: str) -> None:
        self.reports.pop(replica, None)
        self.arrived.pop(replica, None)

    def fresh(self) -> list[dict[str, Any]]:
        now = time.time()
        for replica, view in list(self.reports.items()):
            if now - view["reported_at"] > STALE_S * 10:
                self.forget(replica)
        live = [v for v in self.reports.values() if now - v["reported_at"] <= STALE_S]
        return sorted(live, key=lambda v: str(v["replica"]))

    async def ask(self, replica: str, request: Forwarded, timeout_s: float) -> Reply | None:
        """`replica`'s app's answer to `request`; None when it gave none in `timeout_s`."""
        ask_id = uuid.uuid4().hex
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.waiting[ask_id] = future
        self.inboxes.setdefault(replica, []).append((ask_id, request))
        self.arrived.setdefault(replica, asyncio.Event()).set()
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            del self.waiting[ask_id]
            queued = self.inboxes.get(replica, [])
            queued[:] = [(i, r) for i, r in queued if i != ask_id]

    async def inbox(self, replica: str, wait_s: float) -> list[tuple[str, Forwarded]]:
        """What was asked of `replica`, waiting up to `wait_s` for something (a long poll)."""
        arrived = self.arrived.setdefault(replica, asyncio.Event())
        if not self.inboxes.get(replica):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(arrived.wait(), wait_s)
        arrived.clear()
        return self.inboxes.pop(replica, [])

    def answer(self, ask_id: str, reply: Reply) -> None:
        future = self.waiting.get(ask_id)
        if future is not None and not future.done():
            future.set_result(reply)


def directory(app_name: str) -> Any:
    """The app's directory actor, created on first use."""
    return Directory.options(  # type: ignore[attr-defined]
        name=f"zooserve-directory-{app_name}",
        namespace="zooserve",
        lifetime="detached",
        get_if_exists=True,
    ).remote()
