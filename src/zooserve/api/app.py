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
from zooserve.api.errors import install_error_handlers
from zooserve.api.metrics import Metrics
from zooserve.api.middleware import ServiceMiddleware
from zooserve.api.tasks import Services, job_tasks
from zooserve.catalog import Config
from zooserve.engines.pool import EnginePool
from zooserve.jobs import JobRunner, JobStore
from zooserve.manager import ModelManager
from zooserve.memory import MB
from zooserve.pipelines.track_sessions import TrackingSessions

log = logging.getLogger("zooserve")


def _bind(services: Services, model: Any, run: Any) -> Any:
    """A job runner for one task: validate the stored body, then run the task's work."""

    async def runner(body: dict[str, Any], progress: Any) -> dict[str, Any]:
        result: dict[str, Any] = await run(services, model.model_validate(body), progress)
        return result

    return runner


def _job_gauges(jobs: JobRunner) -> dict[str, float]:
    gauges: dict[str, float] = {"jobs_queued": float(jobs.queued())}
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        gauges[f"jobs_{status}"] = float(jobs.counts().get(status, 0))
    return gauges


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
        )
        metrics.watch(active, extra=lambda: _job_gauges(jobs))
        # Everything imported so far lives for the whole process: freezing it keeps each
        # unload's gc.collect() from walking ~500k transformers/torch objects (seconds on a CPU).
        # Before start(): pinned models loaded there must stay collectable.
        gc.freeze()
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
    app = FastAPI(title="zooserve", version=__version__, lifespan=lifespan)
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(routes_models.router)
    modules = (routes_detect, routes_enrich, routes_track, routes_generate, routes_jobs, routes_ui)
    for module in modules:
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(
        ServiceMiddleware,
        api_key=key,
        max_body_bytes=int(config.max_request_mb * MB),
        metrics=metrics,
    )
    return app
