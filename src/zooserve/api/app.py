"""The FastAPI application: one manager per app, created at start-up, closed at shutdown."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zooserve import __version__
from zooserve.api import (
    routes_detect,
    routes_enrich,
    routes_generate,
    routes_jobs,
    routes_models,
    routes_track,
    routes_ui,
)
from zooserve.api.errors import document_errors, install_error_handlers
from zooserve.api.metrics import Metrics
from zooserve.api.middleware import ServiceMiddleware
from zooserve.api.request_settings import apply_request_settings
from zooserve.api.tasks import Services, job_tasks
from zooserve.api.uploads import sweep_stale_uploads
from zooserve.catalog import Config
from zooserve.core.redaction import register_secrets
from zooserve.engines.pool import EnginePool
from zooserve.jobs.queue import JobRunner, JobStore
from zooserve.manager import ModelManager
from zooserve.pipelines.track_sessions import TrackingSessions
from zooserve.runtimes.allocator import pin_mmap_threshold
from zooserve.runtimes.memory import MB

log = logging.getLogger("zooserve")


def _bind(services: Services, model: Any, run: Any) -> Any:
    """A job runner for one task: validate the stored body, apply its settings (the job runs
    in a worker's task, not its request's: nothing of the request's context reaches it), then
    run the task's work."""

    async def runner(body: dict[str, Any], progress: Any) -> dict[str, Any]:
        parsed = model.model_validate(body)
        apply_request_settings(parsed)
        result: dict[str, Any] = await run(services, parsed, progress)
        return result

    return runner


def _job_gauges(jobs: JobRunner) -> dict[str, float]:
    gauges: dict[str, float] = {"jobs_queued": float(jobs.queued())}
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        gauges[f"jobs_{status}"] = float(jobs.counts().get(status, 0))
    return gauges


def body_media_types(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path) -> the media types its request body may have, as the OpenAPI document
    says (JSON, plus multipart on upload routes): the contract is the one place it is stated."""
    table: dict[tuple[str, str], frozenset[str]] = {}
    for path, operations in app.openapi().get("paths", {}).items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content")
            if content:
                table[(method.upper(), path)] = frozenset(content)
    return table


def tidy_openapi(app: FastAPI) -> None:
    """The served document, corrected once: the error envelope documented (errors.py), and
    the `$defs` of request bodies given as whole JSON schemas (upload routes) moved to
    components, where their `#/$defs/...` references would not resolve."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            document = build()
            _hoist_defs(document)
            document_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _hoist_defs(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            for name, definition in node.pop("$defs", {}).items():
                components.setdefault(name, visit(definition))
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)
        return node

    visit(document.get("paths", {}))


def create_app(
    config: Config, manager: ModelManager | None = None, api_key: str | None = None
) -> FastAPI:
    """Build the app; the manager is created inside the server's event loop at start-up.

    `api_key` defaults to $ZOOSERVE_API_KEY; when set, every route but /health and the
    dashboard's page shell needs `Authorization: Bearer <key>` (or `X-API-Key`).
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pin_mmap_threshold()  # before the threads that decode and infer
        app.state.manager = active = manager or ModelManager(config)
        app.state.engines = engines = EnginePool(config, active)
        app.state.tracking_sessions = sessions = TrackingSessions(active)
        services = Services(active, engines, sessions)
        tasks = job_tasks()
        app.state.job_tasks = tasks
        app.state.jobs = jobs = JobRunner(
            JobStore(config.resolve_path(config.jobs_db)),
            {name: _bind(services, *entry) for name, entry in tasks.items()},
            max_queued=config.max_queued_jobs,
            workers=config.job_workers,
            keep=config.jobs_keep,
            max_age_s=config.jobs_max_age_s,
        )
        metrics.watch(active, extra=lambda: _job_gauges(jobs))
        # Everything imported so far lives for the whole process: freezing it keeps each
        # unload's gc.collect() from walking ~500k transformers/torch objects (seconds on a CPU).
        # Before start(): pinned models loaded there must stay collectable.
        gc.freeze()
        sweep_stale_uploads(config.media_dir)
        await active.start()
        await engines.start()
        sessions.start_sweeper()
        await jobs.start()
        log.info(
            "zooserve ready: device=%s budget=%.0f MB models=%d auth=%s",
            app.state.manager.device,
            app.state.manager.budget_bytes / MB,
            len(config.models),
            "on" if key else "off",
        )
        try:
            yield
        finally:
            await jobs.close()
            await sessions.stop_sweeper()
            await engines.close()
            await active.close()

    key = api_key if api_key is not None else os.environ.get("ZOOSERVE_API_KEY") or None
    register_secrets([key] if key else [])  # never shown in an error, a job or a log line
    app = FastAPI(title="zooserve", version=__version__, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.api_key = key  # /health decides what a caller without it may see
    install_error_handlers(app)
    app.include_router(routes_models.router)
    modules = (routes_detect, routes_enrich, routes_track, routes_generate, routes_jobs, routes_ui)
    for module in modules:
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    tidy_openapi(app)
    add_service_layers(app, config, api_key=key, metrics=metrics, routes=body_media_types(app))
    return app


def add_service_layers(
    app: FastAPI,
    config: Config,
    *,
    api_key: str | None,
    metrics: Metrics,
    routes: dict[tuple[str, str], frozenset[str]],
) -> None:
    """CORS (inside) and ServiceMiddleware (outside, so it sees every request first) with
    the config's limits; `routes` is body_media_types of the app that serves the routes."""
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(
        ServiceMiddleware,
        api_key=api_key,
        max_body_bytes=int(config.max_request_mb * MB),
        metrics=metrics,
        max_json_depth=config.max_json_depth,
        body_media_types=routes,
        max_json_bytes=int(config.max_json_mb * MB),
        allowed_origins=config.cors_origins,
    )
