"""The GPU check's first section: what the code review of the CUDA paths asks to see on the
real device. ONNX Runtime's providers (available, and each session's, first = used), memory at
start (`mem_get_info` vs NVML vs the ledger, and what the process holds outside the ledger:
the CUDA context and torch's cache beyond its tensors), unload and park verification while
another lane allocates on the device, and pinned host RSS against the model's bytes through
park / wake / drop. On the CPU the figures that cannot exist are None."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch

from zooserve.manager import ModelManager
from zooserve.runtimes.memory import (
    device_overhead,
    nvml_device_memory,
    nvml_process_bytes,
    rss_bytes,
)

ALLOCATION_BYTES = 64 * 2**20


def memory_at_start(manager: ModelManager) -> dict[str, Any]:
    """The device's free/total by the CUDA driver and by NVML beside the manager's budget."""
    index = torch.device(manager.device).index or 0
    cuda = manager.device.startswith("cuda")
    free, total = torch.cuda.mem_get_info(index) if cuda else (None, None)
    return {
        "mem_get_info": {"free": free, "total": total},
        "nvml_device": nvml_device_memory(index) if cuda else None,
        "nvml_process": nvml_process_bytes(index) if cuda else None,
        "ledger": {"budget": manager.budget_bytes, "used": manager.used_bytes()},
        "outside_ledger": asdict(device_overhead(manager.probe)),  # context, cache slack
    }


def ort_providers(sessions: dict[str, list[list[str]]]) -> dict[str, Any]:
    try:
        import onnxruntime

        available: list[str] | None = list(onnxruntime.get_available_providers())
    except ImportError:
        available = None
    return {"available": available, "sessions": sessions}


def session_providers(adapter: Any, depth: int = 5) -> list[list[str]]:
    """`get_providers()` of every ONNX Runtime session the adapter holds (looked up through
    its attributes: rapidocr keeps each four objects down)."""
    found: list[list[str]] = []
    seen: set[int] = set()

    def walk(value: Any, level: int) -> None:
        if id(value) in seen or level > depth or isinstance(value, (str, bytes, int, float)):
            return
        seen.add(id(value))
        if type(value).__name__ == "InferenceSession":
            found.append(list(value.get_providers()))
            return
        children = vars(value).values() if hasattr(value, "__dict__") else ()
        for child in children:
            walk(child, level + 1)

    walk(adapter, 0)
    return found


@contextmanager
def allocating_lane(device: str) -> Iterator[dict[str, int]]:
    """Another lane allocating and freeing 64 MB on the device while the block runs: what a
    device-wide before/after comparison would mistake for the unloaded model's memory."""
    stop, running = threading.Event(), threading.Event()
    counts = {"allocations": 0}

    def allocate() -> None:
        while not stop.is_set():
            block = torch.empty(ALLOCATION_BYTES, dtype=torch.uint8, device=device)
            block.fill_(1)
            counts["allocations"] += 1
            running.set()
            del block
            time.sleep(0.005)  # a lane's pace, not a busy loop (on the CPU it shares 2 cores)

    thread = threading.Thread(target=allocate, name="gpu-check-allocator", daemon=True)
    thread.start()
    running.wait(timeout=30)  # the lane is allocating before the block starts
    try:
        yield counts
    finally:
        stop.set()
        thread.join(timeout=10)


async def verification_under_load(manager: ModelManager, name: str) -> dict[str, Any]:
    """Load `name`, then park it, wake it and unload it while another lane allocates; the
    RSS beside the model's bytes at each step (pinned host memory is RSS)."""
    loaded = await manager.load(name)
    nbytes = loaded.get("bytes") or 0
    rss = {"loaded": rss_bytes()}
    result: dict[str, Any] = {"model": name, "bytes": nbytes}
    with allocating_lane(manager.device) as lane:
        if manager.host_tier.budget_bytes:
            state = manager.state(name)
            park = await manager.unloader.start(state, "evict", "gpu check: park", park=True)
            result["park"] = {"bytes": park.bytes, **park.details}
            rss["parked"] = rss_bytes()
            woken = await manager.load(name)
            result["wake"] = {k: woken.get(k) for k in ("tier_from", "seconds")}
            rss["woken"] = rss_bytes()
        else:
            result["park"] = result["wake"] = None  # no host tier on this device
        unloaded = await manager.unload(name)
        rss["dropped"] = rss_bytes()
        result["unload"] = {
            key: unloaded.get(key) for key in ("recovered_bytes", "expected_bytes", "verified")
        }
        result["lane_allocations"] = lane["allocations"]
    result["rss_change_from_loaded"] = {k: v - rss["loaded"] for k, v in rss.items()}
    return result
