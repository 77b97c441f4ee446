"""Model churn under a memory budget, measured against the ideal schedule of what it sends.

A real `zooserve serve` subprocess on 127.0.0.1 holds FOUR OWLv2 detectors (see churn_zoo.py:
the real architecture, reduced, random weights, built offline; equal ~39 MB each, or unequal
~18-60 MB) under `memory_budget_mb: 100` on the CPU, where the budget counts tensor bytes, so
requests spread over the four models make the server load and evict all the time. Each run
sends one seeded sequence (uniform or skewed popularity, see churn_ideal.py) from closed-loop
clients to a fresh server, and divides its loads by the ideal online schedule of that very
sequence. Runs (RUNS): honest estimates, estimates 8x too low ("wrong"), and arrival order
(`max_wait_s: 0`) as the baseline.

A side task reads GET /health every ~50 ms for the largest `used` memory the server reports
(its `scheduler` block when present, else its memory figures). The load and unload events
(GET /models/info) give a second, independent peak: the sum of the measured bytes of models
whose load had started and whose unload had not finished, at the worst moment.

    .venv/bin/python bench/churn.py --seeds 7,8,9 --popularity uniform,skewed --json out/churn.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.churn_ideal import POPULARITY, ideal_loads, sequence
from bench.churn_report import summary, table
from bench.churn_zoo import (
    BUDGET_MB,
    IMAGE,
    MB,
    SIZES,
    Zoo,
    build_zoo,
    estimates_mb,
    write_config,
)
from tests.api import subprocess_server

PROMPTS = ["a person", "a rocket"]
#: A busy machine imports torch slowly: how long a server may take to answer /health.
START_TIMEOUT_S = 300
#: For the server: offline, and no progress bar on every one of its many loads.
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


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


async def churn(url: str, order: list[str], concurrency: int) -> dict[str, Any]:
    """Send a detect for each model of `order`, in order, from `concurrency` clients."""
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
    used += [final] if final is not None else []
    peaks += [final_peak] if final_peak is not None else []
    events = info.get("events", [])
    budget_mb = float(info.get("memory_budget_mb", BUDGET_MB))
    peak_resident, over_budget_s = resident(events, budget_mb)
    kinds = Counter(e["kind"] for e in events)
    return {
        "requests": len(order),
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


#: Run name -> (estimates 8x too low, max_wait_s or None for the service's default).
RUNS: dict[str, tuple[bool, float | None]] = {
    "honest": (False, None),
    "wrong": (True, None),
    "arrival-order": (False, 0.0),
    "arrival-wrong": (True, 0.0),
    "age-cap-10s": (False, 10.0),
    "age-cap-1s": (False, 1.0),
    "age-cap-0.3s": (False, 0.3),
}


def run(base: Path, zoo: Zoo, label: str, order: list[str], concurrency: int) -> dict[str, Any]:
    """One run of `order` on a fresh server (see RUNS)."""
    wrong, max_wait_s = RUNS[label]
    config = write_config(base, zoo, wrong, max_wait_s, tag=label)
    with subprocess_server.running(config, SERVER_ENV, START_TIMEOUT_S) as (url, process):
        report = asyncio.run(churn(url, order, concurrency))
        report["alive"] = process.poll() is None
    sizes = {name: nbytes / MB for name, (_, nbytes) in zoo.items()}
    ideal = ideal_loads(order, sizes, BUDGET_MB, concurrency)
    estimates = sorted(set(estimates_mb(zoo, wrong).values()))
    return {
        "run": label,
        "ordering": "arrival" if max_wait_s == 0 else "swap-aware",
        "models": len(zoo),
        "estimate_mb": estimates[0] if len(estimates) == 1 else f"{estimates[0]}-{estimates[-1]}",
        "real_mb": round(statistics.mean(sizes.values()), 2),
        **report,
        "ideal_loads": ideal,
        "loads_vs_ideal": round(report["loads"] / max(1, ideal), 2),
        "loads_per_request": round(report["loads"] / max(1, len(order)), 3),
    }


def bench(
    requests: int,
    concurrency: int,
    models: int,
    runs: tuple[str, ...] = ("honest", "wrong"),
    *,
    seeds: tuple[int, ...] = (7,),
    popularity: tuple[str, ...] = ("uniform",),
    sizes: tuple[str, ...] = ("equal",),
) -> list[dict[str, Any]]:
    """Every run of `runs` for every seed, popularity and zoo of `sizes`, each on its own
    server; the runs of one sequence follow each other, so a busy machine slows them alike."""
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            zoo = build_zoo(Path(tmp), models, size)
            for shape in popularity:
                for seed in seeds:
                    order = sequence(sorted(zoo), requests, seed, shape)
                    for label in runs:
                        report = run(Path(tmp), zoo, label, order, concurrency)
                        print(
                            label,
                            size,
                            shape,
                            seed,
                            report["loads"],
                            "loads, ideal",
                            report["ideal_loads"],
                            file=sys.stderr,
                            flush=True,
                        )
                        reports.append({**report, "sizes": size, "popularity": shape, "seed": seed})
    return reports


def _names(text: str, known: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = set(names) - set(known)
    if unknown:
        raise SystemExit(f"unknown {sorted(unknown)}: choose from {sorted(known)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--models", type=int, default=4, help="detectors (budget 100 MB)")
    parser.add_argument("--seeds", default="7", help="comma-separated sequence seeds")
    parser.add_argument("--popularity", default="uniform", help=f"comma-separated of {POPULARITY}")
    parser.add_argument("--sizes", default="equal", help=f"comma-separated of {SIZES}")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--runs", default="honest,wrong,arrival-order", help=f"comma-separated of {sorted(RUNS)}"
    )
    args = parser.parse_args()
    reports = bench(
        args.requests,
        args.concurrency,
        args.models,
        _names(args.runs, list(RUNS)),
        seeds=tuple(int(seed) for seed in args.seeds.split(",")),
        popularity=_names(args.popularity, POPULARITY),
        sizes=_names(args.sizes, SIZES),
    )
    print(table(reports), summary(reports), sep="\n\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
