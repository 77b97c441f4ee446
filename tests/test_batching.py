"""Dynamic batching across requests (zooserve.manager.batching) and inference lanes per model: unit
tests of the batcher with a counting runner, and real detectors (tiny random OWLv2 and
Grounding DINO, loaded through the real code) whose batched results must equal each
request's results alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import TinyModels
from zooserve.catalog import Config
from zooserve.manager import ModelManager
from zooserve.manager.batching import Batcher, batch_key


async def test_concurrent_requests_share_one_run_and_get_their_own_results() -> None:
    batcher = Batcher()
    runs: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        runs.append(list(items))
        await asyncio.sleep(0.01)  # the lane is busy: later requests queue meanwhile
        return [i * 10 for i in items]

    first = asyncio.create_task(batcher.submit("k", [1], run, max_batch_size=8))
    await asyncio.sleep(0)  # the first batch starts alone: a lone request never waits
    rest = [asyncio.create_task(batcher.submit("k", [i, i + 100], run, 8)) for i in (2, 3, 4)]
    assert await first == [10]
    assert [await r for r in rest] == [[20, 1020], [30, 1030], [40, 1040]]
    assert runs == [[1], [2, 102, 3, 103, 4, 104]]
    assert (batcher.batches, batcher.items) == (2, 7)


async def test_a_batch_never_exceeds_max_batch_size_and_an_error_reaches_every_caller() -> None:
    batcher = Batcher()
    sizes: list[int] = []

    async def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        if 13 in items:
            raise ValueError("bad frame")
        return items

    calls = [asyncio.create_task(batcher.submit("k", [i, i], run, 4)) for i in range(10, 16)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert max(sizes) <= 4
    failed = [r for r in results if isinstance(r, ValueError)]
    assert failed and all(str(e) == "bad frame" for e in failed)
    assert [10, 10] in results  # others' batches are not affected


async def test_a_caller_cancelled_while_queued_leaves_and_one_running_waits_for_its_batch() -> None:
    batcher = Batcher()
    release = asyncio.Event()
    ran: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        ran.append(list(items))
        await release.wait()
        return items

    running = asyncio.create_task(batcher.submit("k", [1], run, 8))
    await asyncio.sleep(0)
    queued = asyncio.create_task(batcher.submit("k", [2], run, 8))
    await asyncio.sleep(0)
    queued.cancel()
    running.cancel()
    await asyncio.sleep(0.01)
    assert not running.done()  # its batch still uses the model the caller leased
    release.set()
    for task in (running, queued):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert ran == [[1]]  # the cancelled queued request never ran


def test_frames_of_different_shapes_or_unhashable_params_are_not_batched() -> None:
    owner = object()
    assert batch_key(owner, "detect", ["cat"], 0.1, shapes=[(4, 4, 3), (4, 4, 3)]) is not None
    assert batch_key(owner, "detect", ["cat"], 0.1, shapes=[(4, 4, 3), (8, 4, 3)]) is None
    assert batch_key(owner, "detect", {"a": 1}, shapes=[(4, 4, 3)]) is None
    key = batch_key(owner, "detect", ["cat"], 0.1, shapes=[(4, 4, 3)])
    assert key != batch_key(owner, "detect", ["dog"], 0.1, shapes=[(4, 4, 3)])


@pytest.mark.parametrize("family", ["owlv2", "grounding_dino"])
async def test_batched_detections_equal_each_request_alone(
    tiny_models: TinyModels, tmp_path: Path, family: str
) -> None:
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 512,
            "models": {
                "det": {
                    "model_id": str(tiny_models.path(family)),
                    "family": family,
                    "options": {"max_batch_size": 8, "concurrency": 1},
                }
            },
            "base_dir": tmp_path,
        }
    )
    manager = ModelManager(config)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    prompts = ["cat", "dog"]
    try:
        async with manager.use("det") as adapter:
            detect: Any = adapter.detect  # type: ignore[attr-defined]
            alone = [await manager.infer(detect, [f], prompts, 0.0) for f in frames]
            before = manager.lanes.batcher.batches
            together = await asyncio.gather(
                *(manager.infer_batched(detect, [f], prompts, 0.0) for f in frames)
            )
            assert manager.lanes.batcher.batches - before < len(frames)  # some were batched
        for (one,), (batched,) in zip(alone, together, strict=True):
            assert len(one) == len(batched) > 0
            np.testing.assert_allclose(batched.xyxy, one.xyxy, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(batched.confidence, one.confidence, rtol=1e-4, atol=1e-5)
            assert list(batched.data["class_name"]) == list(one.data["class_name"])
    finally:
        await manager.close()


async def test_each_loaded_model_gets_its_own_lane_that_ends_with_it(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 512,
            "models": {
                name: {
                    "model_id": str(tiny_models.path("owlv2")),
                    "family": "owlv2",
                    "options": {"concurrency": 2},
                }
                for name in ("a", "b")
            },
            "base_dir": tmp_path,
        }
    )
    manager = ModelManager(config)
    frame = np.zeros((32, 32, 3), np.uint8)
    try:
        async with manager.use("a") as a, manager.use("b") as b:
            threads = await asyncio.gather(
                manager.infer(lambda _: __import__("threading").current_thread().name, a),
                manager.infer(lambda _: __import__("threading").current_thread().name, b),
            )
            await manager.infer(a.detect, [frame], ["cat"], 0.5)  # type: ignore[attr-defined]
        assert threads[0].startswith("zooserve-infer-a") and threads[1].startswith(
            "zooserve-infer-b"
        )
        assert manager.lanes.pool.lanes["a"].workers == 2
        await manager.unload("a")
        assert "a" not in manager.lanes.pool.lanes and "b" in manager.lanes.pool.lanes
    finally:
        await manager.close()
