"""Per family, through the real `ModelManager` on the real device: load (and ÷ from_pretrained),
bytes estimated / measured / peak (torch and NVML side by side), frames/s at batch 1 and 8 per
dtype (and under `torch.compile` where the family allows it), unload recovery, and the host
tier's wake. Figures that cannot exist on this device
(NVML, a half-precision or pinned-memory figure on the CPU) are None."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import transformers

from zooserve.families.base import ModelAdapter
from zooserve.families.kinds import ConceptTracker, Tracker, TrackPrompt
from zooserve.manager import ModelManager
from zooserve.runtimes.nvml import nvml_used_bytes

FP32_SUFFIX = "@fp32"
PROMPTS = ["person", "car"]
LABELS = ["a person", "a cat", "a car"]


def cuda_index(device: str) -> int | None:
    return (torch.device(device).index or 0) if device.startswith("cuda") else None


def device_bytes(device: str) -> dict[str, int | None]:
    """This process's device memory three ways: torch allocated, torch reserved, NVML (the
    process, else the whole device where NVML lists no PID, as in containers)."""
    index = cuda_index(device)
    if index is None:
        return {"torch_allocated": None, "torch_reserved": None, "nvml": None}
    torch.cuda.synchronize(index)
    nvml, _ = nvml_used_bytes(index, str(torch.cuda.get_device_properties(index).uuid))
    return {
        "torch_allocated": int(torch.cuda.memory_allocated(index)),
        "torch_reserved": int(torch.cuda.memory_reserved(index)),
        "nvml": nvml,
    }


def delta(after: dict[str, int | None], before: dict[str, int | None]) -> dict[str, int | None]:
    return {
        key: (None if after[key] is None or before[key] is None else after[key] - before[key])  # type: ignore[operator]
        for key in after
    }


def frame(width: int = 640, height: int = 480) -> np.ndarray:
    """A real photograph (scikit-image's astronaut), resized: RGB uint8 (height, width, 3)."""
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (width, height))


def run_kind(adapter: ModelAdapter, images: list[np.ndarray]) -> None:
    """One call of the adapter's kind over `images` (a batch); trackers are measured apart."""
    kind = adapter.kind
    call: Any = adapter
    if kind == "detector":
        call.detect(images, PROMPTS if getattr(adapter, "open_vocabulary", False) else None, 0.3)
    elif kind == "classifier":
        call.classify(images, LABELS if getattr(adapter, "zero_shot", False) else None)
    elif kind == "embedder":
        call.embed_images(images)
    elif kind == "segmenter":
        call.segment(images)
    elif kind == "depth":
        call.estimate_depth(images)
    elif kind == "pose":
        height, width = images[0].shape[:2]
        boxes = np.array([[0, 0, width / 2, height]] * len(images), dtype=np.float32)
        call.estimate_pose(images[0], boxes)
    elif kind == "action":
        call.recognize(images, LABELS)
    elif kind == "ocr":
        call.read(images)
    elif kind == "quality":
        call.score(images)
    else:
        raise ValueError(f"no frames/s driver for kind {kind!r}")


async def frames_per_s(
    manager: ModelManager, name: str, batch: int, seconds: float
) -> float | None:
    """Frames/s of the adapter's own call at `batch`, after one untimed call, through the
    manager's lane; repeated for about `seconds` (at least once)."""
    images = [frame()] * batch
    async with manager.use(name) as adapter:
        if adapter.kind == "tracker":
            return None
        await manager.infer(run_kind, adapter, images)
        return await _rate(manager, adapter, images, seconds)


async def _rate(
    manager: ModelManager, adapter: ModelAdapter, images: list[np.ndarray], seconds: float
) -> float:
    calls, started = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - started < seconds:
        await manager.infer(run_kind, adapter, images)
        calls += 1
    return round(calls * len(images) / (time.perf_counter() - started), 2)


async def compiled_frames_per_s(
    manager: ModelManager, name: str, seconds: float, backend: str
) -> dict[str, Any]:
    """Frames/s at batch 1 and 8 with the adapter's model under `torch.compile` (static
    shapes: one compile per batch size, its first call timed apart as `compile_s`). The
    model is swapped back afterwards and dynamo's caches dropped, so nothing compiled
    outlives the measure."""
    figures: dict[str, Any] = {"backend": backend, "compile_s": {}}
    async with manager.use(name) as adapter:
        served: Any = adapter
        original = served.model
        served.model = torch.compile(original, backend=backend, dynamic=False)
        try:
            for batch in (1, 8):
                images = [frame()] * batch
                started = time.perf_counter()  # compiling can outlast a lane's deadline
                await asyncio.to_thread(run_kind, adapter, images)
                figures["compile_s"][str(batch)] = round(time.perf_counter() - started, 2)
                figures[str(batch)] = await _rate(manager, adapter, images, seconds)
        finally:
            served.model = original
            torch._dynamo.reset()
    return figures


async def video_fps(manager: ModelManager, name: str, frames: int) -> dict[str, Any]:
    """Tracker propagation frames/s on a 1280x720 clip from frame 0's prompt: a box, or for a
    concept tracker (SAM 3) the texts of `PROMPTS`, whose objects it finds itself; with the
    most objects any frame held, since a step's cost grows with them."""
    clip = [np.roll(frame(1280, 720), 8 * i, axis=1) for i in range(frames)]
    async with manager.use(name) as adapter:
        if not isinstance(adapter, Tracker):
            return {"video_fps": None}
        if isinstance(adapter, ConceptTracker):
            prompt, session = "text", adapter.start_concepts(PROMPTS, 1280, 720)
        else:
            box = TrackPrompt(object_id=1, frame_number=0, box=(400.0, 100.0, 800.0, 700.0))
            prompt, session = "box", adapter.start([box], 1280, 720)
        counts = [len(await manager.infer(adapter.step, session, 0, clip[0]))]
        started = time.perf_counter()
        for number, image in enumerate(clip[1:], start=1):
            counts.append(len(await manager.infer(adapter.step, session, number, image)))
        fps = round((frames - 1) / (time.perf_counter() - started), 2)
    return {"video_fps": fps, "video_prompt": prompt, "video_objects_max": max(counts)}


def from_pretrained_s(model_class: str | None, directory: str, device: str) -> float | None:
    """Seconds of the bare `from_pretrained` of the same folder onto the device."""
    if model_class is None:
        return None
    started = time.perf_counter()
    model = getattr(transformers, model_class).from_pretrained(
        directory, local_files_only=True, device_map=device
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return round(seconds, 3)


async def tier_wake(manager: ModelManager, name: str) -> dict[str, Any]:
    """Park the loaded model in pinned host memory (as an eviction does) and wake it."""
    state = manager.state(name)
    if not manager.host_tier.budget_bytes:
        return {"tier_wake_s": None, "parked": False}
    event = await manager.unloader.start(state, "evict", "gpu check: park", park=True)
    parked = event.details.get("tier") == "host"
    woken = await manager.load(name) if parked else {}
    return {
        "tier_wake_s": _round(woken.get("seconds")) if woken.get("tier_from") == "host" else None,
        "parked": parked,
        "park_event": {"bytes": event.bytes, **event.details},
    }


async def measure(
    manager: ModelManager,
    name: str,
    model_class: str | None,
    directory: str | None,
    settings: dict[str, Any],
    compile_backend: str | None = None,
) -> dict[str, Any]:
    """Every per-family figure of the issue for one model (`name`, and `name@fp32` on CUDA);
    with `compile_backend`, frames/s under `torch.compile` too (in the service's dtype)."""
    device = manager.device
    row: dict[str, Any] = {}
    if directory is not None:
        row["from_pretrained_s"] = await asyncio.to_thread(
            from_pretrained_s, model_class, directory, device
        )
    before = device_bytes(device)
    loaded = await manager.load(name)
    row.update(
        load_s=_round(loaded.get("seconds")),
        bytes_estimate=manager.state(name).estimate,
        bytes_measured=loaded.get("bytes"),
        peak_bytes=loaded.get("peak_bytes"),
        device_delta=delta(device_bytes(device), before),
        method=getattr(manager.state(name).footprint, "method", None),
    )
    if row.get("from_pretrained_s") and row["load_s"]:
        row["load_ratio_from_pretrained"] = round(row["load_s"] / row["from_pretrained_s"], 2)
    seconds = settings["fps_seconds"]
    half = {str(b): await frames_per_s(manager, name, b, seconds) for b in (1, 8)}
    if compile_backend is not None:
        try:
            compiled = await compiled_frames_per_s(manager, name, seconds, compile_backend)
        except Exception as error:  # a graph dynamo cannot take is a figure, not a failure
            compiled = {"backend": compile_backend, "error": f"{type(error).__name__}: {error}"}
        row["compiled"] = compiled
    row.update(await video_fps(manager, name, settings["video_frames"]))
    row.update(await tier_wake(manager, name))
    if row.get("tier_wake_s") and row["load_s"]:
        row["tier_wake_ratio"] = round(row["tier_wake_s"] / row["load_s"], 3)
    unloaded = await manager.unload(name)
    recovered, measured = unloaded.get("recovered_bytes"), row["bytes_measured"]
    row["unload_recovered_fraction"] = round(recovered / measured, 3) if measured else None
    row["unload_verified"] = unloaded.get("verified")
    if device.startswith("cuda"):
        fp32 = name + FP32_SUFFIX
        await manager.load(fp32)
        full = {str(b): await frames_per_s(manager, fp32, b, seconds) for b in (1, 8)}
        await manager.unload(fp32)
        row["frames_per_s"] = {"fp32": full, "half": half}
    else:
        row["frames_per_s"] = {"fp32": half, "half": None}  # fp32 is the CPU's dtype
    return row


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def fp32_factory(default: Callable[..., ModelAdapter]) -> Callable[..., ModelAdapter]:
    """The manager's adapter factory, with `<name>@fp32` entries loaded in float32."""

    def build(spec: Any, source: str, device: str) -> ModelAdapter:
        adapter = default(spec, source, device)
        if spec.name.endswith(FP32_SUFFIX):
            adapter.dtype = torch.float32
        return adapter

    return build
