"""Health and model management: /health, /models/info, /models/load, /models/unload.

/health is public (liveness): without the API key, when one is configured, it says status,
device and memory only; loaded models, engine details and the scheduler need the key. Engine
details are redacted on every route (launch argv, URLs and errors carry engine tokens).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from zooserve.api.middleware import holds_key
from zooserve.api.schemas import (
    HealthResponse,
    LoadRequest,
    ModelRef,
    ModelsInfoResponse,
    PublicHealthResponse,
)
from zooserve.core.redaction import redact
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import MB, nvml_device_memory, rss_bytes

router = APIRouter()
#: What the seed's clients wait for in /health's `status`.
HEALTHY = "healthy"


def configured_key(request: Request) -> str | None:
    """The API key the service enforces (None: it runs without one)."""
    key = getattr(request.app.state, "api_key", None)
    return key if isinstance(key, str) and key else None


def may_see_details(request: Request) -> bool:
    """No key is configured, or the caller presented it."""
    key = configured_key(request)
    return key is None or holds_key(request.scope, key)


def engine_details(request: Request) -> dict[str, dict[str, Any]] | None:
    """Each engine's status with every secret the config gives it (and the service key)
    redacted, whatever field it ended up in."""
    pool = _engines(request)
    if pool is None:
        return None
    secrets: set[str] = set()
    for spec in manager_of(request).config.engines:
        secrets |= spec.secrets()
    key = configured_key(request)
    if key:
        secrets.add(key)
    details: dict[str, dict[str, Any]] = redact(pool.engine_status(), secrets)
    return details


def _engines(request: Request) -> Any:
    """The app's language-engine pool (None before start-up)."""
    return getattr(request.app.state, "engines", None)


def manager_of(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


@router.get("/health", response_model=HealthResponse | PublicHealthResponse)
async def health(request: Request) -> HealthResponse | PublicHealthResponse:
    manager = manager_of(request)
    on_cuda = manager.device.startswith("cuda")
    public = PublicHealthResponse(
        status=HEALTHY,
        device=manager.device,
        gpu_memory_allocated=manager.probe.allocated_bytes() if on_cuda else None,
        gpu_memory_reserved=manager.probe.reserved_bytes() if on_cuda else None,
        memory_budget_mb=manager.budget_bytes / MB,
        memory_used_mb=manager.used_bytes() / MB,
        process_rss_mb=rss_bytes() / MB,
        nvml=nvml_device_memory() if on_cuda else None,
    )
    if not may_see_details(request):
        return public
    return HealthResponse(
        **public.model_dump(),
        models_loaded=manager.loaded_models(),
        engines=engine_details(request),
        scheduler=manager.scheduler_status(),
    )


@router.get("/models/info", response_model=ModelsInfoResponse)
async def models_info(request: Request, events: int = 50) -> ModelsInfoResponse:
    manager = manager_of(request)
    pool = _engines(request)
    models = {name: manager.model_info(name) for name in manager.states}
    if pool is not None:
        for name, info in models.items():
            if pool.serves(name):
                info.update(pool.model_status(name))
    return ModelsInfoResponse(
        available_models=manager.config.task_models(),
        loaded_models=manager.loaded_models(),
        device=manager.device,
        memory_budget_mb=manager.budget_bytes / MB,
        memory_used_mb=manager.used_bytes() / MB,
        models=models,
        events=[e.to_dict() for e in manager.events.recent(max(0, min(events, 1000)))],
        engines=engine_details(request),
    )


@router.post("/models/load")
async def load_model(body: LoadRequest, request: Request) -> dict[str, Any]:
    return await manager_of(request).load(
        body.model_id, reason="POST /models/load", keep_alive=body.keep_alive
    )


@router.post("/models/unload")
async def unload_model(body: ModelRef, request: Request) -> dict[str, Any]:
    return await manager_of(request).unload(body.model_id, reason="POST /models/unload")
