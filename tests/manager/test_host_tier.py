"""The host tier: evicted models park in host memory and wake by a copy. This machine has no
GPU, so the tier logic runs against an injected device: the manager's modules stay on the
CPU and an injected mover records each move (to the host, to the "device")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tests.manager.sized import Clock, SizedModel, model
from zooserve.catalog import Config
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import MB

FAKE_DEVICE = "cuda:7"  # injected: no GPU here


class OutsideTorch(SizedModel):
    def torch_modules(self) -> list[torch.nn.Module]:
        return []


def tiered_manager(
    tmp_path: Path, budget_mb: float, host_mb: float, models: dict[str, dict], **kw: Any
) -> tuple[ModelManager, list[tuple[str, int]]]:
    moves: list[tuple[str, int]] = []

    def mover(modules: Sequence[torch.nn.Module], device: str) -> None:
        moves.append((device, len(modules)))

    specs = {
        name: {"model_id": str(tmp_path), "family": "sized", **spec}
        for name, spec in models.items()
    }
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": budget_mb,
            "host_memory_budget_mb": host_mb,
            "admission_timeout_s": 2,
            "models": specs,
            "base_dir": tmp_path,
        }
    )
    SizedModel.loads = []
    manager = ModelManager(
        config,
        adapter_factory=lambda spec, src, dev: SizedModel(spec, src, dev),
        host_mover=mover,
        **kw,
    )
    manager.host_tier.device = FAKE_DEVICE  # where a woken model's modules go
    return manager, moves


async def lease(manager: ModelManager, name: str) -> None:
    async with manager.use(name):
        pass


async def test_an_evicted_model_parks_and_wakes_by_a_copy(tmp_path: Path) -> None:
    manager, moves = tiered_manager(tmp_path, 3, 10, {"a": model(2), "b": model(2)})
    await lease(manager, "a")
    await lease(manager, "b")  # evicts "a": to host memory, not to disk
    assert manager.model_info("a")["tier"] == "host"
    assert "model:a" not in manager.ledger and manager.host_tier.used_bytes == 2 * MB
    woken = await manager.load("a")  # "a" wakes (b parks)
    assert (woken["status"], woken["tier_from"]) == ("loaded", "host")
    info = manager.model_info("a")
    assert (info["tier"], info["load_count"], info["wake_count"]) == ("device", 1, 1)
    assert SizedModel.loads == ["a", "b"]  # no second load from disk
    assert moves == [("cpu", 1), ("cpu", 1), (FAKE_DEVICE, 1)]
    assert [e.kind for e in manager.events.recent() if e.model == "a"][-1] == "wake"
    assert manager.ledger.peak_used_bytes <= manager.budget_bytes
    await manager.close()


async def test_a_full_host_tier_sends_the_oldest_parked_model_to_disk(tmp_path: Path) -> None:
    manager, _ = tiered_manager(
        tmp_path, 2.5, 4.5, {"a": model(2), "b": model(2), "c": model(2), "d": model(2)}
    )
    for name in "abcd":
        await lease(manager, name)
    # a, b, c were evicted in turn; the host holds two: "a" went on to disk.
    assert [manager.model_info(n)["tier"] for n in "abcd"] == ["disk", "host", "host", "device"]
    assert manager.host_tier.used_bytes == 4 * MB <= manager.host_tier.budget_bytes
    await manager.close()


async def test_explicit_unloads_go_to_disk_and_models_outside_torch_never_park(
    tmp_path: Path,
) -> None:
    manager, moves = tiered_manager(tmp_path, 3, 10, {"a": model(2), "b": model(2)})
    await lease(manager, "a")
    assert (await manager.unload("a"))["status"] == "unloaded"
    assert manager.model_info("a")["tier"] == "disk" and moves == []
    await lease(manager, "b")
    await lease(manager, "a")  # b parks
    assert (await manager.unload("b"))["tier"] == "host"  # a parked model is dropped too
    assert manager.model_info("b")["tier"] == "disk" and manager.host_tier.used_bytes == 0
    outside_torch = OutsideTorch(manager.state("a").spec, "", "cpu")  # ONNX Runtime, OpenCV
    assert not manager.host_tier.can_park(outside_torch, MB)
    await manager.close()


async def test_keep_alive_expiry_parks_and_on_the_cpu_parking_is_off_by_default(
    tmp_path: Path,
) -> None:
    clock = Clock()
    manager, _ = tiered_manager(tmp_path, 10, 10, {"a": model(1, keep_alive="30s")}, clock=clock)
    await lease(manager, "a")
    clock.now += 31
    assert await manager.reap_expired() == ["a"]
    assert manager.model_info("a")["tier"] == "host"
    await manager.close()
    plain = ModelManager(
        Config.model_validate({"device": "cpu", "models": {}, "base_dir": tmp_path})
    )
    assert plain.host_tier.budget_bytes == 0  # "auto": weights on the CPU are in RAM already
    await plain.close()
