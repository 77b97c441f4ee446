"""The ingress: the zooserve HTTP API in front of the model-holding replicas.

Every request passes the same ServiceMiddleware as the single-node server (API key, body
size, media type, JSON depth, request id), then:

- /health and /models/info answer from the replicas' merged reports (views.py);
- /models/unload acts on every replica (unload.py);
- /api/jobs* run here, over the shared job store: a job's work is forwarded to a replica
  like any request, and re-run on another replica if its replica dies;
- everything else is forwarded as it came (method, path, query, headers, body) to a
  replica, routed by the model the request will use (routing.py), and its response is
  streamed back as the replica's app sends it. An upload (multipart) is spooled to shared
  storage as it arrives and the replica reads it from there (spool.py).

A replica that dies before answering gives 503 `replica_unavailable` with Retry-After;
GET/HEAD/OPTIONS are retried on another replica first. One that dies in the middle of a
streamed body cuts it short; an NDJSON stream then ends with an error line (forwarding.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from zooserve import __version__
from zooserve.api import routes_jobs
from zooserve.api.app import add_service_layers, body_media_types, create_app
from zooserve.api.errors import install_error_handlers
from zooserve.api.metrics import Metrics
from zooserve.api.routes_models import may_see_details
from zooserve.api.tasks import job_tasks
from zooserve.catalog import Config
from zooserve.core.errors import ZooError
from zooserve.core.logs import request_id
from zooserve.jobs.queue import JobRunner, JobStore, Progress
from zooserve.manager import ModelManager
from zooserve.ray.asgi import Forwarded
from zooserve.ray.forwarding import ForwardedResponse, Forwarder
from zooserve.ray.routing import JOB_ROUTES, request_fields, routing_key
from zooserve.ray.spool import Spool, is_multipart, spool_body, sweep_spools
from zooserve.ray.unload import unload_everywhere
from zooserve.ray.views import merge_health, merge_models_info, public_health

log = logging.getLogger("zooserve.ray")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
#: Tries of a request that may run twice (idempotent routes, async jobs' work).
RETRIES = 3
#: Request headers that describe the client's connection, not the request.
HOP_BY_HOP = frozenset({b"connection", b"transfer-encoding", b"content-length", b"expect"})
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ForwardedError(ZooError):
    """A replica's error answer to a job's work, kept as the job's error."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "")), error.get("details") or {})
        self.status, self.code = status, str(error.get("code", "internal_error"))


def _ingress_owned(header: bytes) -> bool:
    """Response headers the ingress's own middleware sets (never twice)."""
    return header == b"x-request-id" or header.startswith(b"access-control-")


def forwarded_headers(request: Request, size: int) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in request.scope["headers"] if k not in HOP_BY_HOP]
    headers = [(k, v) for k, v in headers if k != b"x-request-id"]
    headers.append((b"content-length", str(size).encode()))
    headers.append((b"x-request-id", request_id.get().encode()))  # one id on both ends
    return headers


def forwarded(request: Request, body: bytes, spool: Spool | None = None) -> Forwarded:
    """The request as a replica's app will see it; a spooled body travels as its path."""
    size = spool.size if spool is not None else len(body)
    return Forwarded(
        request.method,
        request.url.path,
        request.scope.get("query_string", b""),
        forwarded_headers(request, size),
        body,
        (request.client.host, request.client.port) if request.client else None,
        str(spool.path) if spool is not None else None,
    )


def job_runner(task: str, forwarder: Forwarder, selector: ModelManager, key: str | None) -> Any:
    """A job's work: the task's own route, on a replica, with the job's stored body."""
    path = JOB_ROUTES[task]

    async def run(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        if task == "track":
            body = {**body, "stream": False}
        data = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ]
        if key:
            headers.append((b"authorization", f"Bearer {key}".encode()))
        request = Forwarded("POST", path, b"", headers, data)
        status, answer = await forwarder.fetch(request, routing_key(selector, path, body), RETRIES)
        if status >= 400:
            raise ForwardedError(status, answer.get("error", {}))
        return answer

    return run


def build_ingress_app(
    config: Config, api_key: str | None, forwarder: Forwarder, directory: Any
) -> FastAPI:
    """The ingress's app. `directory`: the replicas' reports (directory.py)."""
    # Never started: answers which model a request will use, from the config and the files
    # here (the same selection as the replicas'); it loads nothing.
    selector = ModelManager(config.model_copy(update={"device": "cpu", "memory_budget_mb": 1.0}))
    # The replicas serve the OpenAPI document and the docs page (forwarded).
    app = FastAPI(
        title="zooserve",
        version=__version__,
        lifespan=_jobs_lifespan(config, api_key, forwarder, selector),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api_key = api_key
    install_error_handlers(app)
    app.include_router(routes_jobs.router)
    _add_cluster_routes(app, directory)
    _add_forwarding_route(app, config, forwarder, selector)
    # The single-node server's checks, with the body media types its routes accept; the
    # ingress answers CORS preflights and adds the CORS headers itself.
    routes = body_media_types(create_app(config, api_key=api_key or ""))
    add_service_layers(app, config, api_key=api_key, metrics=Metrics(), routes=routes)
    return app


def _jobs_lifespan(
    config: Config, api_key: str | None, forwarder: Forwarder, selector: ModelManager
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Async jobs run here, over the shared store; their work is forwarded to a replica."""
    tasks = job_tasks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweep_spools(config.media_dir)
        app.state.job_tasks = tasks  # routes_jobs validates bodies against these
        app.state.jobs = jobs = JobRunner(
            JobStore(config.resolve_path(config.jobs_db)),
            {name: job_runner(name, forwarder, selector, api_key) for name in tasks},
            max_queued=config.max_queued_jobs,
            workers=config.job_workers,
            keep=config.jobs_keep,
            max_age_s=config.jobs_max_age_s,
        )
        await jobs.start()
        try:
            yield
        finally:
            await jobs.close()

    return lifespan


def _add_cluster_routes(app: FastAPI, directory: Any) -> None:
    """The routes answered from every replica at once: health, models info, unload."""

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        reports = await directory.fresh.remote()
        merged = merge_health(reports, detailed=may_see_details(request))
        body = merged if may_see_details(request) else public_health(merged)
        return JSONResponse(body, status_code=200 if reports else 503)

    @app.get("/models/info")
    async def models_info() -> JSONResponse:
        return JSONResponse(merge_models_info(await directory.fresh.remote()))

    @app.post("/models/unload", include_in_schema=False)
    async def unload(request: Request) -> Response:
        return await unload_everywhere(directory, forwarded(request, await request.body()))


def _add_forwarding_route(
    app: FastAPI, config: Config, forwarder: Forwarder, selector: ModelManager
) -> None:
    """Every other request goes to a replica chosen by the model it will use."""

    @app.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def forward(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not is_multipart(content_type):
            body = await request.body()
            return await send_on(forwarded(request, body), request_fields(content_type, body))
        spool = await spool_body(request.stream(), content_type, config.media_dir)
        try:
            return await send_on(forwarded(request, b"", spool), spool.fields, spool.remove)
        except BaseException:
            spool.remove()
            raise

    async def send_on(
        request: Forwarded, fields: dict[str, Any], on_close: Callable[[], None] | None = None
    ) -> Response:
        """Forward to a replica chosen by the request's model; stream its answer back."""
        model = routing_key(selector, request.path, fields)
        tries = RETRIES if request.method in IDEMPOTENT else 1
        start, rest = await forwarder.open(request, model, tries)
        response = ForwardedResponse(rest.__aiter__(), status_code=start.status)
        response.on_close = on_close
        response.raw_headers = [(k, v) for k, v in start.headers if not _ingress_owned(k)]
        return response
