"""The GPU check's churn phase: a real `zooserve serve` subprocess whose budget holds about a
third of the measured families, mixed requests at a fixed concurrency over HTTP, and the
server's device memory sampled every 20 ms by NVML (its PID, else the whole device less what
was used before it started): `never_over_budget`, loads, wakes, p50/p99.

Detectors get `POST /api/detect` on a frame; the other kinds `POST /models/load`, which admits,
evicts and wakes exactly as a request of theirs would (their routes need detections first).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from gpu_families import frame
from PIL import Image

from zooserve.api.server import free_port
from zooserve.runtimes.memory import MB, nvml_device_memory, nvml_process_bytes

SAMPLE_S = 0.02
FRAME = "frame.png"
#: Servers running now (the time limit kills them before it exits).
RUNNING: list[subprocess.Popen[bytes]] = []


def write_config(
    base: Path, models: dict[str, dict[str, Any]], budget_mb: float, device: str
) -> Path:
    media = base / "media"
    media.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame()).save(media / FRAME)
    config = {
        "device": device,
        "memory_budget_mb": round(budget_mb, 3),
        "media_root": str(media),
        "jobs_db": str(base / "jobs.sqlite3"),
        "models": models,
    }
    path = base / "churn.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class NvmlSampler:
    """The server's device bytes every 20 ms on a thread (None on a device without NVML)."""

    def __init__(self, pid: int, index: int | None) -> None:
        self.pid, self.index = pid, index
        whole = nvml_device_memory(index) if index is not None else None
        self.baseline = whole["used"] if whole else None
        self.samples: list[int] = []
        self.source: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int | None:
        if self.index is None:
            return None
        used = nvml_process_bytes(self.index, pid=self.pid)
        if used is not None:
            self.source = "nvml_process"
            return used
        whole = nvml_device_memory(self.index)
        if whole is None or self.baseline is None:
            return None
        self.source = "nvml_device_less_baseline"
        return whole["used"] - self.baseline

    def _run(self) -> None:
        while not self._stop.is_set():
            used = self._read()
            if used is not None:
                self.samples.append(used)
            time.sleep(SAMPLE_S)

    def __enter__(self) -> NvmlSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "zooserve", "serve", "--config", str(config)]
    command += ["--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env)
    RUNNING.append(process)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the churn server did not start")


async def send(
    url: str, kinds: dict[str, str], requests: int, concurrency: int, seed: int
) -> tuple[list[float], Counter[int]]:
    """`requests` seeded picks over `kinds` ({name: kind}); latencies and status counts."""
    picks = random.Random(seed).choices(sorted(kinds), k=requests)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def one(client: httpx.AsyncClient, name: str) -> None:
        if kinds[name] == "detector":
            body = {"video_path": FRAME, "frame_numbers": [0], "model": name}
            path = "/api/detect"
        else:
            body, path = {"model_id": name}, "/models/load"
        started = time.perf_counter()
        response = await client.post(url + path, json=body, timeout=300)
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] += 1

    async def worker(client: httpx.AsyncClient) -> None:
        while picks:
            await one(client, picks.pop())

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, statuses


def churn(
    base: Path,
    models: dict[str, dict[str, Any]],
    kinds: dict[str, str],
    peaks: dict[str, int],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Run the phase: `models` config entries, `peaks` measured bytes, `kinds` per model."""
    budget_mb = max(sum(peaks.values()) / 3, max(peaks.values())) / MB * 1.05
    entries = {n: {**models[n], "vram_mb": round(peaks[n] / MB, 3)} for n in peaks}
    device = settings["device"]
    config = write_config(base, entries, budget_mb, device)
    port = free_port()
    process = start_server(config, port)
    url = f"http://127.0.0.1:{port}"
    index = (int(device.split(":")[1]) if ":" in device else 0) if "cuda" in device else None
    started = time.perf_counter()
    try:
        with NvmlSampler(process.pid, index) as sampler:
            latencies, statuses = asyncio.run(
                send(url, {n: kinds[n] for n in peaks}, settings["requests"], 8, seed=0)
            )
        info = httpx.get(f"{url}/models/info", timeout=30).json()["models"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        RUNNING.remove(process)
    budget = budget_mb * MB
    samples = sampler.samples
    return {
        "models": len(peaks),
        "budget_mb": round(budget_mb, 3),
        "requests": len(latencies),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "loads": sum(info[n]["load_count"] for n in peaks),
        "wakes_from_host": sum(info[n].get("wake_count") or 0 for n in peaks),
        "p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "p99_s": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
        "wall_s": round(time.perf_counter() - started, 1),
        "never_over_budget": (max(samples) <= budget) if samples else None,
        "max_device_mb": round(max(samples) / MB, 1) if samples else None,
        # the server idle (CUDA context, no model): the budget does not cover it
        "idle_device_mb": round(samples[0] / MB, 1) if samples else None,
        "never_over_budget_above_idle": (max(samples) - samples[0] <= budget) if samples else None,
        "nvml_source": sampler.source,
        "samples": len(samples),
    }
