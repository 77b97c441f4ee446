"""Health and model management: /health, /models/info, /models/load, /models/unload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from zooserve.api.schemas import HealthResponse, ModelRef, ModelsInfoResponse
from zooserve.manager import ModelManager
from zooserve.memory import MB, nvml_device_memory, rss_bytes

router = APIRouter()


def _engines(request: Request) -> Any:
    """The app's language-engine pool (None before start-up)."""
    return getattr(request.app.state, "engines", None)


def manager_of(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    manager = manager_of(request)
    on_cuda = manager.device.startswith("cuda")
    return HealthResponse(
        status="ok",
        models_loaded=manager.loaded_models(),
        device=manager.device,
        gpu_memory_allocated=manager.probe.allocated_bytes() if on_cuda else None,
        gpu_memory_reserved=manager.probe.reserved_bytes() if on_cuda else None,
        memory_budget_mb=manager.budget_bytes / MB,
        memory_used_mb=manager.used_bytes() / MB,
        process_rss_mb=rss_bytes() / MB,
        nvml=nvml_device_memory() if on_cuda else None,
        engines=_engines(request).engine_status() if _engines(request) else None,
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
        engines=pool.engine_status() if pool is not None else None,
    )


@router.post("/models/load")
async def load_model(body: ModelRef, request: Request) -> dict[str, Any]:
    return await manager_of(request).load(body.model_id, reason="POST /models/load")


@router.post("/models/unload")
async def unload_model(body: ModelRef, request: Request) -> dict[str, Any]:
    return await manager_of(request).unload(body.model_id, reason="POST /models/unload")
