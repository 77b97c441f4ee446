"""Model churn under a memory budget, with honest and with wrong memory estimates.

A real `zooserve serve` subprocess on 127.0.0.1 holds FOUR OWLv2 detectors of ~39 MB each
(the real architecture, reduced, random weights, built offline) under `memory_budget_mb: 100`
on the CPU, where the budget counts tensor bytes: two models fit, three do not, so requests
spread over the four models make the server load and evict all the time. The same seeded
request sequence runs twice, each on a fresh server:

- honest: every model's `vram_mb` is its real size;
- wrong: every model's `vram_mb` is 10 (about a quarter of the truth).

A side task reads GET /health every ~50 ms for the largest `used` memory the server reports
(its `scheduler` block when present, else its memory figures). The load and unload events
(GET /models/info) give a second, independent peak: the sum of the measured bytes of models
whose load had started and whose unload had not finished, at the worst moment.

    .venv/bin/python bench/churn.py --requests 240 --concurrency 8 --json out/churn.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import skimage.data
import torch
import yaml
from PIL import Image
from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.api import subprocess_server
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config

MB = 2**20
BUDGET_MB = 100
WRONG_MB = 10
IMAGE = "astronaut.png"
PROMPTS = ["a person", "a rocket"]
#: A ViT-S-like image tower (384 wide, 5 layers) at 128 px: 39.0 MB of fp32 tensors, a
#: forward in ~20 ms on these CPUs, so the run measures churn rather than inference.
VISION = {
    "hidden_size": 384,
    "intermediate_size": 1632,
    "num_hidden_layers": 5,
    "num_attention_heads": 6,
    "image_size": 128,
    "patch_size": 16,
}
TEXT_POSITIONS = 16
#: For the server: offline, and no progress bar on every one of its many loads.
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def build_detector(directory: Path) -> int:
    """Save a seeded ~39 MB `Owlv2ForObjectDetection` and its processor; its tensor bytes."""
    transformers_logging.disable_progress_bar()
    tokenizer = byte_level_tokenizer(TEXT_POSITIONS, pad_token="!")  # BOS must not be id 0
    config = Owlv2Config(
        text_config=text_config(tokenizer, TEXT_POSITIONS),
        vision_config=VISION,
        projection_dim=32,  # the class head compares queries in the text tower's width
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(config).eval()
    size = {"height": VISION["image_size"], "width": VISION["image_size"]}
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size=size), tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def build_zoo(base: Path, count: int) -> dict[str, tuple[Path, int]]:
    """`count` detectors as {name: (directory, tensor bytes)}: one build, copied."""
    first = base / "owl-0"
    nbytes = build_detector(first)
    zoo = {"owl-0": (first, nbytes)}
    for i in range(1, count):
        zoo[f"owl-{i}"] = (Path(shutil.copytree(first, base / f"owl-{i}")), nbytes)
    media = base / "media"
    media.mkdir(exist_ok=True)
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).save(media / IMAGE)  # 128x128
    return zoo


def write_config(
    base: Path,
    zoo: dict[str, tuple[Path, int]],
    wrong_mb: float | None,
    max_wait_s: float | None = None,
) -> Path:
    """A config over `zoo` whose estimates are the real sizes, or `wrong_mb` for every model;
    `max_wait_s` 0 serves requests in arrival order (None: the service's swap-aware default)."""
    models = {
        name: {
            "model_id": str(path),
            "family": "owlv2",
            "vram_mb": wrong_mb if wrong_mb is not None else round(nbytes / MB, 2),
        }
        for name, (path, nbytes) in zoo.items()
    }
    config = {
        "device": "cpu",
        "memory_budget_mb": BUDGET_MB,
        "media_root": str(base / "media"),
        "jobs_db": str(base / f"jobs-{wrong_mb}.sqlite3"),
        "tasks": {"object_detection": {"selected": "owl-0", "options": sorted(zoo)}},
        "models": models,
    }
    if max_wait_s is not None:
        config["max_wait_s"] = max_wait_s
    path = base / f"models-{'wrong' if wrong_mb is not None else 'honest'}-{max_wait_s}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def used_mb(health: dict[str, Any]) -> tuple[float | None, float | None]:
    """(used MB, scheduler's peak used MB or None) from a /health answer, whatever its shape."""
    scheduler = health.get("scheduler")
    if isinstance(scheduler, dict) and "used_bytes" in scheduler:
        peak = scheduler.get("peak_used_bytes")
        return scheduler["used_bytes"] / MB, None if peak is None else peak / MB
    memory = health.get("memory")
    if isinstance(memory, dict) and "used_mb" in memory:
        return float(memory["used_mb"]), None
    used = health.get("memory_used_mb")
    return (None if used is None else float(used)), None


def resident(events: list[dict[str, Any]], budget_mb: float) -> tuple[float, float]:
    """(peak MB, seconds above `budget_mb`) of the bytes held by models between a load's start
    and its unload's end, as the event log (measured bytes, end times, durations) tells it."""
    held: dict[str, int] = {}
    changes: list[tuple[float, int]] = []
    for event in sorted(events, key=lambda e: e["time"]):
        name = event["model"]
        if event["kind"] == "load" and event.get("bytes"):
            started = event["time"] - (event.get("seconds") or 0.0)
            held[name] = event["bytes"]
            changes.append((started, event["bytes"]))
        elif event["kind"] in {"unload", "evict"} and name in held:
            changes.append((event["time"], -held.pop(name)))
    if not changes:
        return 0.0, 0.0
    changes.sort()  # at equal times frees (negative) count first
    # Models still loaded are counted up to the log's last event.
    ends = [at for at, _ in changes[1:]] + [max((e["time"] for e in events), default=0.0)]
    now = peak = 0
    over = 0.0
    for (at, delta), after in zip(changes, ends, strict=True):
        now += delta
        peak = max(peak, now)
        if now > budget_mb * MB:
            over += after - at
    return peak / MB, over


async def churn(url: str, names: list[str], requests: int, concurrency: int) -> dict[str, Any]:
    """Send `requests` detects (a seeded random model each) from `concurrency` clients."""
    rng = random.Random(7)
    order = [rng.choice(names) for _ in range(requests)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in order:
        queue.put_nowait(name)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    used: list[float] = []
    peaks: list[float] = []
    done = asyncio.Event()

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = {"video_path": IMAGE, "model": queue.get_nowait(), "prompts": PROMPTS}
            started = time.perf_counter()
            try:
                statuses[str((await client.post("/api/detect", json=body)).status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    async def sample_health(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            # A failed sample is the busy server's, not the bench's concern.
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                now, peak = used_mb((await client.get("/health")).json())
                if now is not None:
                    used.append(now)
                if peak is not None:
                    peaks.append(peak)
            await asyncio.sleep(0.05)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        sampler = asyncio.create_task(sample_health(client))
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        done.set()
        await sampler
        info = (await client.get("/models/info", params={"events": 1000})).json()
        final, final_peak = used_mb((await client.get("/health")).json())
    if final is not None:
        used.append(final)
    if final_peak is not None:
        peaks.append(final_peak)
    events = info.get("events", [])
    budget_mb = float(info.get("memory_budget_mb", BUDGET_MB))
    peak_resident, over_budget_s = resident(events, budget_mb)
    kinds = Counter(e["kind"] for e in events)
    return {
        "requests": requests,
        "statuses": dict(sorted(statuses.items())),
        "loads": sum(m.get("load_count", 0) for m in info["models"].values()),
        "evictions": kinds["evict"],
        "over_budget_events": kinds["over_budget"],
        "events_truncated": len(events) >= 1000,
        "budget_mb": budget_mb,
        "max_used_mb": round(max(used), 1) if used else None,
        "scheduler_peak_used_mb": round(max(peaks), 1) if peaks else None,
        "peak_resident_mb": round(peak_resident, 1),
        "seconds_over_budget": round(over_budget_s, 2),
        "health_samples": len(used),
        "seconds": round(seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000),
    }


#: Run name -> (wrong estimate MB or None for honest ones, max_wait_s or None for the default).
RUNS: dict[str, tuple[float | None, float | None]] = {
    "honest": (None, None),
    "wrong": (WRONG_MB, None),
    "arrival-order": (None, 0.0),
    "swap-aware-3s": (None, 3.0),
}


def run(base: Path, zoo: dict[str, tuple[Path, int]], label: str, **load: int) -> dict:
    """One run on a fresh server (see RUNS)."""
    wrong_mb, max_wait_s = RUNS[label]
    config = write_config(base, zoo, wrong_mb, max_wait_s)
    with subprocess_server.running(config, SERVER_ENV) as (url, process):
        report = asyncio.run(churn(url, sorted(zoo), load["requests"], load["concurrency"]))
        report["alive"] = process.poll() is None
    report["loads_per_request"] = round(report["loads"] / max(1, load["requests"]), 3)
    estimate = wrong_mb if wrong_mb is not None else round(next(iter(zoo.values()))[1] / MB, 1)
    ordering = "arrival" if max_wait_s == 0 else "swap-aware"
    return {
        "run": label,
        "ordering": ordering,
        "models": len(zoo),
        "estimate_mb": estimate,
        **report,
    }


def bench(
    requests: int, concurrency: int, models: int, runs: tuple[str, ...] = ("honest", "wrong")
) -> list[dict]:
    """Build the zoo once and measure each of `runs` on its own server."""
    with tempfile.TemporaryDirectory() as tmp:
        zoo = build_zoo(Path(tmp), models)
        load = {"requests": requests, "concurrency": concurrency}
        return [run(Path(tmp), zoo, r, **load) for r in runs]


COLUMNS = (
    ("run", lambda r: r["run"]),
    ("ordering", lambda r: r.get("ordering", "")),
    ("estimate MB", lambda r: r["estimate_mb"]),
    ("requests", lambda r: r["requests"]),
    ("statuses", lambda r: ", ".join(f"{code}: {n}" for code, n in r["statuses"].items())),
    ("loads", lambda r: r["loads"]),
    ("loads/request", lambda r: r.get("loads_per_request", "")),
    ("evictions", lambda r: r["evictions"]),
    ("max used MB / budget", lambda r: f"{r['max_used_mb']} / {r['budget_mb']:g}"),
    ("scheduler peak MB", lambda r: r["scheduler_peak_used_mb"] or "n/a"),
    ("resident peak MB (events)", lambda r: r["peak_resident_mb"]),
    ("s over budget (events)", lambda r: r["seconds_over_budget"]),
    ("over_budget events", lambda r: r["over_budget_events"]),
    ("wall s", lambda r: r["seconds"]),
    ("p50 ms", lambda r: r["p50_ms"]),
    ("p99 ms", lambda r: r["p99_ms"]),
)


def table(reports: list[dict]) -> str:
    """The runs side by side, one markdown row each."""
    rows = [[name for name, _ in COLUMNS], ["---"] * len(COLUMNS)]
    rows += [[str(cell(r)) for _, cell in COLUMNS] for r in reports]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--models", type=int, default=4, help="~39 MB detectors (budget 100 MB)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--runs", default="honest,wrong,arrival-order", help=f"comma-separated of {sorted(RUNS)}"
    )
    args = parser.parse_args()
    runs = tuple(args.runs.split(","))
    reports = bench(args.requests, args.concurrency, args.models, runs)
    print(table(reports))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
