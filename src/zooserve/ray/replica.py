"""The model-holding deployment: one zooserve app (one ModelManager, one device, one budget)
per replica, run in process for each forwarded request.

Ray Serve's model multiplexing routes a request to a replica that holds its model. Ray keeps
that view in `_ModelMultiplexWrapper` (ray/serve/multiplex.py): an OrderedDict `models` of
the ids this replica holds, capped at `max_num_models_per_replica` and evicted by count (LRU),
and pushed to the controller (`record_request_routing_info`) whenever the flag
`_push_multiplexed_replica_info` is set (checked every 0.1 s). Here:

- the cap is `MAX_MODELS_PER_REPLICA`, so Ray's count-LRU never evicts anything;
- what Ray caches per id is a `ModelToken`, not the model: loading, admission by bytes and
  eviction stay with the manager, on the request's own path through the app;
- `sync_ray_view` makes the wrapper's ids equal to what the manager holds (loaded, loading
  or admitted-next) after each request and twice a second (keep-alive unloads happen on
  timers), and sets the push flag when they differ. Ray has no public call to drop one id;
  editing the wrapper's dict and flag is the smallest change that uses Ray's own push path.

Besides the requests Ray routes to it, a replica answers what the ingress asks of it by name
through the directory (`/models/unload` goes to every replica): `_answer_forever`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from ray import serve
from starlette.requests import Request

from zooserve.api import routes_models
from zooserve.api.app import create_app
from zooserve.api.errors import error_response
from zooserve.catalog import load_config
from zooserve.manager import ModelManager, Status
from zooserve.ray.asgi import Forwarded, Reply, Start, collect, run_asgi
from zooserve.ray.directory import directory

log = logging.getLogger("zooserve.ray")
#: Ray's count cap, set out of reach: the manager evicts by bytes instead.
MAX_MODELS_PER_REPLICA = 1_000_000
#: Where `@serve.multiplexed` keeps its `_ModelMultiplexWrapper` on the deployment instance.
MULTIPLEX_ATTR = "__serve_multiplex_wrapper"
REPORT_EVERY_S = 0.5
#: How long one long poll of the directory's inbox waits for a request.
INBOX_WAIT_S = 10.0
REPLICA_HEADER = b"x-zooserve-replica"


class ModelToken:
    """What Ray's multiplexing caches for a model id: the manager owns the model itself."""

    def __init__(self, name: str) -> None:
        self.name = name


def held_models(manager: ModelManager) -> set[str]:
    """Models this replica holds or is about to: loaded or loading here (idle or in use),
    or named by a plan waiting for admission."""
    resident = {n for n, s in manager.states.items() if s.status in (Status.LOADED, Status.LOADING)}
    return resident | manager.wanted_models()


def unreachable_upload(request: Forwarded, exc: OSError) -> Reply:
    """The ingress spooled the body where this replica cannot read it: media_root is not the
    same storage on this replica's machine (a deployment mistake, not the caller's)."""
    log.error("cannot read the spooled body %s: %s", request.body_path, exc)
    response = error_response(
        503,
        "upload_unreachable",
        "this replica cannot read the uploaded file; media_root must be shared storage",
        {"reason": exc.strerror or type(exc).__name__},
    )
    return Reply(response.status_code, response.raw_headers, bytes(response.body))


def sync_ray_view(owner: object, held: set[str]) -> bool:
    """Make Ray's multiplexed ids for this replica equal `held`; True when they changed."""
    wrapper = getattr(owner, MULTIPLEX_ATTR, None)
    if wrapper is None:  # no multiplexed request yet: Ray routes no model here
        return False
    models = wrapper.models
    if set(models) == held:
        return False
    for gone in set(models) - held:
        del models[gone]
    for name in held - set(models):
        models[name] = ModelToken(name)
    wrapper._push_multiplexed_replica_info = True
    return True


def ray_model_ids(owner: object) -> list[str]:
    wrapper = getattr(owner, MULTIPLEX_ATTR, None)
    return sorted(wrapper.models) if wrapper is not None else []


def debug_router() -> APIRouter:
    """Test-only routes (`debug_routes=True`): hold a request open (or an NDJSON stream, after
    its first line) after writing this process's pid to a file, so a test can kill the
    replica mid-request."""
    router = APIRouter(prefix="/_debug")

    @router.post("/hold", include_in_schema=False)
    async def hold(pid_file: str, seconds: float = 60) -> dict[str, Any]:
        Path(pid_file).write_text(str(os.getpid()))
        await asyncio.sleep(seconds)
        return {"held": seconds}

    @router.post("/stream", include_in_schema=False)
    async def stream(pid_file: str, seconds: float = 60) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield b'{"type": "frame", "frame_number": 0}\n'
            Path(pid_file).write_text(str(os.getpid()))
            await asyncio.sleep(seconds)
            yield b'{"type": "summary"}\n'

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return router


@serve.deployment(name="ZooReplica")
class ZooReplica:
    # Ray Serve awaits an async constructor: the app's lifespan (manager, pinned models) is
    # entered on the loop that serves the requests.
    async def __init__(  # type: ignore[misc]
        self, config_path: str, api_key: str | None, debug_routes: bool = False
    ) -> None:
        config = load_config(config_path)
        # Async jobs run in the ingress over the shared store; a replica's own job runner
        # must never open that store (its start-up would mark the ingress's jobs failed).
        private = Path(tempfile.mkdtemp(prefix="zooserve-replica-"))
        config = config.model_copy(update={"jobs_db": private / "jobs.sqlite3"})
        self.api_key = api_key
        self.manager = ModelManager(config)
        self.app: FastAPI = create_app(config, self.manager, api_key=api_key or "")
        if debug_routes:
            self.app.include_router(debug_router())
        self._stack = contextlib.AsyncExitStack()
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        self.directory = directory(context.app_name)
        self._changed = asyncio.Event()
        self._answering: set[asyncio.Task[None]] = set()
        self._reporter = asyncio.create_task(self._report_forever())
        self._answerer = asyncio.create_task(self._answer_forever())

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def model_token(self, model_id: str) -> ModelToken:
        return ModelToken(model_id)

    async def handle(self, request: Forwarded) -> AsyncIterator[Start | bytes]:
        """Run one forwarded request through this replica's app (a streaming call)."""
        model = serve.get_multiplexed_model_id()
        if model:
            await self.model_token(model)  # tells Ray at once: more requests come here
        signed = (REPLICA_HEADER, self.replica.encode())
        try:
            async for item in run_asgi(self.app, request):
                yield (
                    Start(item.status, [*item.headers, signed]) if isinstance(item, Start) else item
                )
        except OSError as exc:  # only opening the spooled body raises, before any item
            refused = unreachable_upload(request, exc)
            yield Start(refused.status, [*refused.headers, signed])
            yield refused.body
        finally:
            self._after_request()

    def _after_request(self) -> None:
        sync_ray_view(self, held_models(self.manager))
        self._changed.set()

    async def _answer_forever(self) -> None:
        """Answer what the ingress asks of this replica by name (directory.py)."""
        while True:
            try:
                asked = await self.directory.inbox.remote(self.replica, INBOX_WAIT_S)
            except Exception as exc:  # the next round tries again
                log.warning("replica %s could not read its inbox: %s", self.replica, exc)
                await asyncio.sleep(REPORT_EVERY_S)
                continue
            for ask_id, request in asked:
                task = asyncio.create_task(self._answer(ask_id, request))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)

    async def _answer(self, ask_id: str, request: Forwarded) -> None:
        try:
            reply = await collect(self.app, request)
            await self.directory.answer.remote(ask_id, reply)
        except Exception as exc:  # the ingress's ask times out and says so
            log.warning("replica %s could not answer %s: %s", self.replica, request.path, exc)
        finally:
            self._after_request()

    def view(self) -> dict[str, Any]:
        """What this replica reports to the directory (its own detailed /health and
        /models/info, as its app answers them)."""
        return {"pid": os.getpid(), "node": self.node, "ray_model_ids": ray_model_ids(self)}

    async def _views(self) -> dict[str, Any]:
        headers = [(b"authorization", f"Bearer {self.api_key}".encode())] if self.api_key else []
        scope = {"type": "http", "app": self.app, "headers": headers, "method": "GET"}
        request = Request({**scope, "path": "/health", "query_string": b""})
        health = await routes_models.health(request)
        info = await routes_models.models_info(request, events=50)
        return {**self.view(), "health": health.model_dump(), "models_info": info.model_dump()}

    async def _report_forever(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), REPORT_EVERY_S)
            self._changed.clear()
            try:
                sync_ray_view(self, held_models(self.manager))
                await self.directory.report.remote(self.replica, await self._views())
            except Exception as exc:  # the next round tries again
                log.warning("replica %s could not report: %s", self.replica, exc)

    async def __del__(self) -> None:
        self._reporter.cancel()
        self._answerer.cancel()
        with contextlib.suppress(Exception):
            await self.directory.forget.remote(self.replica)
        await self._stack.aclose()
