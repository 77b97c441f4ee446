"""The FastAPI application: one manager per app, created at start-up, closed at shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from zooserve import __version__
from zooserve.api import (
    routes_detect,
    routes_enrich,
    routes_generate,
    routes_models,
    routes_track,
)
from zooserve.api.errors import install_error_handlers
from zooserve.catalog import Config
from zooserve.manager import ModelManager

log = logging.getLogger("zooserve")


def create_app(config: Config, manager: ModelManager | None = None) -> FastAPI:
    """Build the app; the manager is created inside the server's event loop at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.manager = manager or ModelManager(config)
        await app.state.manager.start()
        log.info(
            "zooserve ready: device=%s budget=%.0f MB models=%d",
            app.state.manager.device,
            app.state.manager.budget_bytes / 2**20,
            len(config.models),
        )
        try:
            yield
        finally:
            await app.state.manager.close()

    app = FastAPI(title="zooserve", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(routes_models.router)
    for module in (routes_detect, routes_enrich, routes_track, routes_generate):
        app.include_router(module.router)
    return app
