"""A call that runs out of device memory is retried once, after the allocator's cache is
released and the idle models it does not use are evicted; a second OOM is a 503.

No GPU here to exhaust: the model's call raises `torch.OutOfMemoryError` (the CUDA OOM) the
first `options.ooms` times, and the probe is the CPU's with its `release_cache` counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.manager.sized import SizedModel, lease_once, model
from zooserve.catalog import Config
from zooserve.core.errors import InferenceFailed
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import CpuProbe


class OutOfMemoryOnce(SizedModel):
    """Its call raises a CUDA OOM the first `options.ooms` times (injected), then doubles."""

    calls = 0

    def predict(self, value: int) -> int:
        self.calls += 1
        if self.calls <= self.spec.options.get("ooms", 0):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return value * 2


class CountingProbe(CpuProbe):
    def __init__(self) -> None:
        super().__init__()
        self.released = 0

    def release_cache(self) -> None:
        self.released += 1
        super().release_cache()


def oom_manager(tmp_path: Path, ooms: int, probe: CpuProbe) -> ModelManager:
    """Room for both 2 MB models: only the OOM, not the budget, makes "idle" go."""
    models = {"idle": model(2), "big": model(2, options={"ooms": ooms})}
    specs = {n: {"model_id": str(tmp_path), "family": "sized", **s} for n, s in models.items()}
    config = Config.model_validate(
        {"device": "cpu", "memory_budget_mb": 10, "models": specs, "base_dir": tmp_path}
    )
    return ModelManager(
        config,
        adapter_factory=lambda spec, src, dev: OutOfMemoryOnce(spec, src, dev),
        probe=probe,
    )


async def test_an_oom_releases_the_cache_evicts_idle_models_and_retries_once(
    tmp_path: Path,
) -> None:
    probe = CountingProbe()
    manager = oom_manager(tmp_path, ooms=1, probe=probe)
    await lease_once(manager, "idle")
    async with manager.use("big") as adapter:
        assert isinstance(adapter, OutOfMemoryOnce)
        released = probe.released
        assert await manager.infer(adapter.predict, 21) == 42  # before: 503 inference_failed
        assert adapter.calls == 2 and probe.released > released
    assert manager.model_info("idle")["status"] != "loaded"  # evicted for the retry
    assert manager.model_info("big")["status"] == "loaded"  # its own model stays
    events = [(e.kind, e.model, e.reason) for e in manager.events.recent()]
    assert ("evict", "idle", "make room for big (out of memory)") in events
    assert [e[1] for e in events if e[0] == "inference_oom"] == ["big"]
    await manager.close()


async def test_a_second_oom_is_a_503_that_says_memory_was_freed_first(tmp_path: Path) -> None:
    manager = oom_manager(tmp_path, ooms=2, probe=CountingProbe())
    async with manager.use("big") as adapter:
        with pytest.raises(InferenceFailed) as failed:
            await manager.infer(adapter.predict, 1)
        assert isinstance(adapter, OutOfMemoryOnce) and adapter.calls == 2  # one retry only
    details: dict[str, Any] = failed.value.details
    assert (failed.value.status, failed.value.code) == (503, "inference_failed")
    assert details["exception"] == "OutOfMemoryError"
    assert details["retried_after_freeing_memory"] is True
    await manager.close()


async def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    manager = oom_manager(tmp_path, ooms=0, probe=CountingProbe())
    async with manager.use("big") as adapter:
        with pytest.raises(InferenceFailed):
            await manager.infer(adapter.predict, None)  # None * 2: a TypeError, not retried
        assert isinstance(adapter, OutOfMemoryOnce) and adapter.calls == 1
    await manager.close()
