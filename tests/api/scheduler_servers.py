"""Real `zooserve serve` subprocesses for the scheduler's HTTP tests (test_scheduler_server.py):
their media, configs and sizes, a parallel start (start-up is mostly imports), and the calls
the tests share (detect, /health's scheduler block, a tracking stream that holds a lease).

Every detector is one of OpenCV's shipped Haar cascades: offline, loaded in milliseconds, and
budgeted on the CPU by its file's bytes, so the arithmetic below is exact. The engine is
tests/engines/sleepy_server.py, launched by the server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import skimage.data
import yaml
from PIL import Image

import tests.engines
from tests.offline_models import cascade
from tests.videos import encode_video
from zooserve.api.server import free_port
from zooserve.families.opencv.detectors import opencv_source
from zooserve.runtimes.memory import MB

SLEEPY_SERVER = Path(tests.engines.__file__).with_name("sleepy_server.py")
#: Frames of the video a hold streams. A stream the client stopped reading runs on until the
#: socket buffers fill (megabytes; these lines are ~60 bytes), so the run itself must outlast
#: what a test does meanwhile: 10-30 ms a frame against about a second.
HOLD_FRAMES = 1200


def cascade_size(file: str) -> int:
    """What the manager claims for a loaded cascade on the CPU: its file's bytes."""
    source = opencv_source(f"opencv:{file}")
    assert source is not None, f"OpenCV ships no {file}"
    return Path(source).stat().st_size


def sized_cascade(file: str, vram_mb: float, **options: Any) -> dict[str, Any]:
    entry = cascade(file, "face")
    entry["vram_mb"] = vram_mb
    entry["options"].update(options)
    return entry


# --- test 1: estimates far below the truth ------------------------------------------------

#: Four detectors of 0.65-0.9 MB, each estimated at 0.1 MB.
WRONG_FILES = {
    "front": "haarcascade_frontalface_default.xml",
    "profile": "haarcascade_profileface.xml",
    "upper": "haarcascade_upperbody.xml",
    "alt": "haarcascade_frontalface_alt.xml",
}
WRONG_BUDGET_MB = 2.0  # any two fit, never three


def wrong_estimates_config(media: Path) -> dict[str, Any]:
    models = {name: sized_cascade(file, 0.1) for name, file in WRONG_FILES.items()}
    sizes = sorted(cascade_size(f) for f in WRONG_FILES.values())
    assert sum(sizes[-2:]) <= WRONG_BUDGET_MB * MB < sum(sizes[:3]), sizes
    return {
        "device": "cpu",
        "memory_budget_mb": WRONG_BUDGET_MB,
        "media_root": str(media),
        "admission_timeout_s": 10,
        "tasks": {"object_detection": {"selected": "front", "options": list(WRONG_FILES)}},
        "models": models,
    }


# --- tests 2-4: a busy model holds most of the budget -------------------------------------

BIG = "haarcascade_frontalface_alt_tree.xml"  # 2.6 MB, held by a tracking stream
BLOCKED = "haarcascade_frontalface_default.xml"  # 0.9 MB: fits only once BIG is free
SMALL = "haarcascade_russian_plate_number.xml"  # 0.07 MB: fits beside BIG
HELD_BUDGET_MB = 3.2
#: Through ZOOSERVE_MAX_PENDING (the environment's override of the config key).
HELD_MAX_PENDING = 2


def held_config(media: Path) -> dict[str, Any]:
    big, blocked, small = cascade_size(BIG), cascade_size(BLOCKED), cascade_size(SMALL)
    budget = HELD_BUDGET_MB * MB
    assert big + small < budget < big + blocked  # evicting SMALL never makes room
    return {
        "device": "cpu",
        "memory_budget_mb": HELD_BUDGET_MB,
        "media_root": str(media),
        # Long enough that a blocked request is still queued whenever a test looks.
        "admission_timeout_s": 120,
        "tasks": {
            "object_detection": {"selected": "small", "options": ["small", "blocked", "big"]},
            "video_tracking": {"selected": "big-tracker", "options": ["big-tracker"]},
        },
        "models": {
            "big": sized_cascade(BIG, 2.6, batch_size=1),
            "big-tracker": {
                "model_id": "builtin:bytetrack",
                "family": "detection_tracker",
                "category": "tracking",
                "options": {"detector": "big"},
            },
            "blocked": sized_cascade(BLOCKED, 0.9),
            "small": sized_cascade(SMALL, 0.08),
        },
    }


# --- test 5: an engine that can sleep holds most of the budget ----------------------------

ENGINE_MB, ENGINE_ASLEEP_MB = 2.5, 0.2
ENGINE_BUDGET_MB = 3.2  # the engine and BLOCKED fit only once the engine sleeps


def engine_config(media: Path, engine_port: int) -> dict[str, Any]:
    blocked = cascade_size(BLOCKED)
    budget = ENGINE_BUDGET_MB * MB
    assert ENGINE_ASLEEP_MB * MB + blocked <= budget < ENGINE_MB * MB + blocked
    return {
        "device": "cpu",
        "memory_budget_mb": ENGINE_BUDGET_MB,
        "media_root": str(media),
        "admission_timeout_s": 20,
        "tasks": {"object_detection": {"selected": "blocked", "options": ["blocked"]}},
        "models": {"chat": {"model_id": "/none"}, "blocked": sized_cascade(BLOCKED, 0.9)},
        "engines": [
            {
                "name": "sleepy",
                "kind": "vllm",
                "base_url": f"http://127.0.0.1:{engine_port}/v1",
                "models": ["chat"],
                "launch": {
                    "command": [sys.executable, str(SLEEPY_SERVER), "{port}"],
                    "memory_mb": ENGINE_MB,
                    "asleep_memory_mb": ENGINE_ASLEEP_MB,
                    "ready_timeout_s": 60,
                    "stop_timeout_s": 5,
                },
            }
        ],
    }


# --- media and servers --------------------------------------------------------------------


def write_media(root: Path) -> Path:
    """`face.png` (one small image to detect on) and `long.mp4` (what a hold tracks)."""
    root.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(skimage.data.astronaut(), (160, 160))
    Image.fromarray(face).save(root / "face.png")
    canvas = np.zeros((240, 320, 3), np.uint8)
    canvas[:, :240] = cv2.resize(skimage.data.astronaut(), (240, 240))
    encode_video(root / "long.mp4", (canvas for _ in range(HOLD_FRAMES)))
    return root


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    command = ["serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-m", "zooserve", *command],
        # Nothing from the caller's ZOOSERVE_* (an API key, a max_pending) changes the test.
        env={**_clean_environment(), "HF_HUB_OFFLINE": "1", **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # several start at once on two shared cores
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{config.name}: server exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health").status_code == 200:
                return url, process
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{config.name}: server did not start")


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ZOOSERVE_")}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def servers(configs: dict[str, tuple[Path, dict[str, str]]]) -> Iterator[dict[str, str]]:
    """Name -> base URL of one server per (config, environment), started in parallel and
    stopped when the block ends."""
    with ThreadPoolExecutor(len(configs)) as pool:
        futures = {name: pool.submit(_start, *entry) for name, entry in configs.items()}
    urls, started, failures = {}, [], []
    for name, future in futures.items():
        try:
            urls[name], process = future.result()
        except AssertionError as failure:
            failures.append(failure)
        else:
            started.append(process)
    try:
        if failures:
            raise failures[0]
        yield urls
    finally:
        for process in started:
            _stop(process)


# --- calls --------------------------------------------------------------------------------


async def detect(http: httpx.AsyncClient, model: str) -> httpx.Response:
    body = {"video_path": "face.png", "frame_numbers": [0], "model": model}
    return await http.post("/api/detect", json=body)


async def scheduler(http: httpx.AsyncClient) -> dict[str, Any]:
    """/health's scheduler block (no API key is configured: the details are shown)."""
    response = await http.get("/health")
    assert response.status_code == 200, response.text
    block: dict[str, Any] = response.json()["scheduler"]
    return block


def claim(block: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((c for c in block["claims"] if c["key"] == key), None)


async def wait_for(
    http: httpx.AsyncClient, what: str, test: Callable[[dict[str, Any]], bool], limit_s: float = 20
) -> dict[str, Any]:
    """The scheduler block once `test` holds; fails naming `what` after `limit_s` (a bound
    against hanging, far above what it takes)."""
    deadline = time.monotonic() + limit_s
    while True:
        block = await scheduler(http)
        if test(block):
            return block
        assert time.monotonic() < deadline, f"{what}: never seen; last /health: {block}"
        await asyncio.sleep(0.05)


HOLD = {
    "video_path": "long.mp4",
    "frame_range": {"start": 0, "end": HOLD_FRAMES - 1},
    "tracking_model": "big-tracker",
    "prompts": ["face"],
    "stream": True,
}


@contextlib.asynccontextmanager
async def holding_big(http: httpx.AsyncClient) -> AsyncIterator[None]:
    """`big` leased by a streamed tracking run until the block ends: one line read, then the
    client stops reading; leaving the block closes the connection (the run ends with it)."""
    async with http.stream("POST", "/api/track", json=HOLD) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        # Kept referenced while held: a line iterator collected as garbage closes the stream.
        lines = response.aiter_lines()
        first = json.loads(await anext(lines))
        assert first["type"] == "frame", first
        block = await scheduler(http)
        held = claim(block, "model:big")
        assert held is not None and held["busy"], block
        yield
