"""Churn-and-cancel soak: a real `zooserve serve` subprocess under mixed, hostile traffic.

Concurrent clients send detect requests on several offline models (declared 2 MB each under a
3 MB budget, so their first loads go one at a time; measured afterwards, MTCNN holds ~2 MB and
the OpenCV detectors no tensors, so they then stay side by side: bench/churn.py is the
eviction churn), stream tracks and drop them mid-stream, submit detect
jobs and cancel them at random moments, and hand over the hostile media corpus of the tests.
Prints requests, status counts, 5xx, server deaths, and the server's RSS: peak and drift
(mean of the last tenth of samples minus the first tenth).

    .venv/bin/python bench/soak.py --requests 400 --concurrency 6
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import media_corpus
from tests.api import subprocess_server
from tests.offline_models import offline_models
from tests.videos import encode_video
from zooserve.media.samples import install_samples

MODELS = ["hog", "face", "mtcnn", "plate"]
#: Each detector's declared size and the budget: one load at a time. Undeclared, each would
#: be admitted at the 256 MB default estimate and refused (507), as 40 % of requests once were.
MODEL_MB, BUDGET_MB = 2.0, 3.0
KINDS = ["detect", "detect", "track-drop", "job-cancel", "hostile"]


def write_config(base: Path) -> Path:
    media = base / "media"
    outside = encode_video(base / "secret.mp4", (np.full((32, 32, 3), 9, np.uint8),) * 3)
    media_corpus.build(media / "corpus", outside)
    install_samples(media)
    models = offline_models()
    for name in MODELS:  # none of them declares a size: each would be admitted at 256 MB
        models[name]["vram_mb"] = MODEL_MB
    config = {
        "device": "cpu",
        "memory_budget_mb": BUDGET_MB,
        "media_root": str(media),
        "jobs_db": str(base / "jobs.sqlite3"),
        "tasks": {"object_detection": {"selected": "hog", "options": MODELS}},
        "models": models,
    }
    path = base / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def one(client: httpx.AsyncClient, rng: random.Random, corpus: list[str]) -> str:
    kind = rng.choice(KINDS)
    if kind == "detect":
        frames = rng.sample(range(250), rng.randint(1, 6))
        body: dict[str, Any] = {
            "video_path": "samples/bikes.mp4",
            "frame_numbers": frames,
            "model": rng.choice(MODELS),
        }
        return str((await client.post("/api/detect", json=body)).status_code)
    if kind == "track-drop":
        start = rng.randint(0, 200)
        body = {
            "video_path": "samples/bikes.mp4",
            "frame_range": {"start": start, "end": start + 40},
            "tracking_model": "hog-bytetrack",
            "prompts": ["person"],
            "stream": True,
        }
        async with client.stream("POST", "/api/track", json=body) as response:
            async for _ in response.aiter_lines():
                if rng.random() < 0.3:
                    break  # the client vanishes mid-stream
            return str(response.status_code)
    if kind == "job-cancel":
        body = {
            "video_path": "samples/bikes.mp4",
            "frame_numbers": list(range(0, 250, 5)),
            "model": "hog",
        }
        response = await client.post("/api/jobs", json={"task": "detect", "body": body})
        if response.status_code != 202:
            return str(response.status_code)
        await asyncio.sleep(rng.random() * 0.5)
        return str((await client.delete(f"/api/jobs/{response.json()['job_id']}")).status_code)
    name = f"corpus/{rng.choice(corpus)}"
    return str(
        (
            await client.post("/api/detect", json={"video_path": name, "frame_numbers": [0]})
        ).status_code
    )


async def soak(url: str, pid: int, requests: int, concurrency: int, corpus: list[str]) -> dict:
    rng = random.Random(7)
    statuses: Counter[str] = Counter()
    samples: list[int] = []
    process = psutil.Process(pid)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                statuses[await one(client, rng, corpus)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            samples.append(process.memory_info().rss)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        alive = (await client.get("/health")).status_code == 200
    tenth = max(1, len(samples) // 10)
    return {
        "requests": requests,
        "seconds": round(time.perf_counter() - started, 1),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5") and s != "503"),
        "alive": alive,
        "rss_first_mb": round(samples[0] / 2**20),
        "rss_peak_mb": round(max(samples) / 2**20),
        "rss_drift_mb": round((np.mean(samples[-tenth:]) - np.mean(samples[:tenth])) / 2**20, 1),
        # requests done -> the server's RSS then: where growth happens, and whether it stops
        "rss_series_mb": {
            i + tenth: round(np.mean(samples[i : i + tenth]) / 2**20)
            for i in range(0, len(samples), tenth)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--only", choices=sorted(set(KINDS)), help="one kind of request only")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the server (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    args = parser.parse_args()
    if args.only:
        KINDS[:] = [args.only]
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp))
        corpus = sorted(p.name for p in (Path(tmp) / "media" / "corpus").iterdir())
        env = dict(item.split("=", 1) for item in args.server_env)
        with subprocess_server.running(config, env) as (url, process):
            result = asyncio.run(soak(url, process.pid, args.requests, args.concurrency, corpus))
            result["alive"] = result["alive"] and process.poll() is None
    for key, value in result.items():
        print(f"{key:>14}: {value}")


if __name__ == "__main__":
    main()
