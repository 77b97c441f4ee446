"""`zooserve bench`: the model-zoo benchmark, measured on the device of this process.

Per model: measured memory, peak, load seconds, inference seconds per frame, memory recovered
after unload, against the seed's success criteria (< 1500 MB, < 5 s load, recovered). Then
side by side, same frames, same run, in alternating rounds: the bare adapter on decoded frames,
the detect pipeline without HTTP, and HTTP /api/detect, for a request of every frame and for
one-frame requests (what decoding and HTTP cost per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from zooserve.api.server import BackgroundServer
from zooserve.catalog import Config
from zooserve.families.base import Detector
from zooserve.manager import ModelManager
from zooserve.media import MediaSource
from zooserve.media.samples import install_samples
from zooserve.pipelines.detect import detect
from zooserve.pipelines.detecting import batch_size, batches
from zooserve.pipelines.selection import selected_model
from zooserve.runtimes.memory import MB
from zooserve_bench.report import failed_row, markdown_table, render_rows

CRITERIA = {"memory_mb": 1500.0, "load_seconds": 5.0}
#: The table printed on a terminal: (row key, short header). bench.md/json hold every key.
SUMMARY_COLUMNS = [
    ("model", "model"),
    ("memory_mb", "MB"),
    ("peak_mb", "peak MB"),
    ("load_seconds", "load s"),
    ("seconds_per_frame", "s/frame"),
    ("recovered_mb", "freed MB"),
    ("meets_criteria", "ok"),
]


def _frame_numbers(frame_count: int, frames: int) -> list[int]:
    return sorted({round(i * (frame_count - 1) / max(1, frames - 1)) for i in range(frames)})


async def _measure_or_report(manager: ModelManager, name: str, images: list[Any]) -> dict[str, Any]:
    """The model's row; a model that fails to load or run gets its error in the row instead."""
    try:
        return await _measure(manager, name, images)
    except Exception as exc:  # any model's failure is its row's, not the whole run's
        with contextlib.suppress(Exception):
            await manager.unload(name, reason="benchmark")
        family = manager.states[name].spec.family if name in manager.states else None
        row = failed_row(_ROW_KEYS, name, family, exc)
        row["meets_criteria"] = False
        return row


_ROW_KEYS = [
    "model",
    "family",
    "device",
    "method",
    "memory_mb",
    "peak_mb",
    "estimate_mb",
    "load_seconds",
    "seconds_per_frame",
    "recovered_mb",
    "rss_delta_mb_on_unload",
    "verified_unload",
    "meets_criteria",
]


async def _measure(manager: ModelManager, name: str, images: list[Any]) -> dict[str, Any]:
    load = await manager.load(name, reason="benchmark")
    state = manager.state(name)
    per_frame = None  # detectors only; `zooserve bench --zoo` times the other kinds
    async with manager.use(name) as adapter:
        if isinstance(adapter, Detector):
            prompts = manager.config.default_prompts if adapter.open_vocabulary else None
            await manager.infer(adapter.detect, images[:1], prompts, 0.3)  # warm caches
            started = time.perf_counter()
            for image in images:
                await manager.infer(adapter.detect, [image], prompts, 0.3)
            per_frame = (time.perf_counter() - started) / len(images)
    unload = await manager.unload(name, reason="benchmark")
    memory_mb = (load["bytes"] or 0) / MB
    row = {
        "model": name,
        "family": state.spec.family,
        "device": manager.device,
        "method": state.footprint.method if state.footprint else "tensor_bytes",
        "memory_mb": round(memory_mb, 2),
        "peak_mb": round((load.get("peak_bytes") or 0) / MB, 2),
        "estimate_mb": state.spec.vram_mb,
        "load_seconds": round(load["seconds"] or 0, 3),
        "seconds_per_frame": None if per_frame is None else round(per_frame, 4),
        "recovered_mb": round(unload.get("recovered_bytes", 0) / MB, 2),
        "rss_delta_mb_on_unload": round(unload.get("rss_delta", 0) / MB, 2),
        "verified_unload": bool(unload.get("verified")),
    }
    row["meets_criteria"] = (
        memory_mb < CRITERIA["memory_mb"]
        and row["load_seconds"] < CRITERIA["load_seconds"]
        and row["verified_unload"]
    )
    return row


#: The three paths timed side by side, in the order of each round (reversed every other round).
PATHS = ("adapter", "pipeline", "http")
#: Goals of issue #18: pipeline / bare adapter and HTTP / pipeline, on the same frames.
GOALS = {"pipeline_over_adapter": 0.9, "http_over_pipeline": 0.95}


async def _side_by_side(
    manager: ModelManager, name: str, images: dict[int, Any], video: str, url: str, rounds: int
) -> dict[str, Any]:
    """Frames/s of the bare adapter on decoded frames, the detect pipeline in this process
    (decode + infer) and HTTP /api/detect, for one request of every frame and for one-frame
    requests. The paths alternate within each round, so whatever else loads the machine falls
    on all three alike rather than on whichever ran last."""
    numbers = sorted(images)
    body = {"video_path": video, "model": name, "confidence_threshold": 0.3}

    size = batch_size(manager.state(name).spec)

    async def adapter(frames: list[int]) -> None:
        """The model's calls on the very batches the pipeline makes: the pipeline's share is
        then its decoding and bookkeeping, not a batch size the adapter was given."""
        async with manager.use(name) as leased:
            assert isinstance(leased, Detector)
            prompts = manager.config.default_prompts if leased.open_vocabulary else None
            for batch in batches(frames, size):
                await manager.infer(leased.detect, [images[n] for n in batch], prompts, 0.3)

    async def pipeline(frames: list[int]) -> None:
        await detect(manager, video, frames, model=name, confidence_threshold=0.3)

    async with httpx.AsyncClient(timeout=600) as client:

        async def http(frames: list[int]) -> None:
            response = await client.post(f"{url}/api/detect", json=body | {"frame_numbers": frames})
            response.raise_for_status()

        runs = {"adapter": adapter, "pipeline": pipeline, "http": http}
        for run in runs.values():  # load and warm each path
            await run(numbers[:1])
        shapes = {"request": [numbers], "one_frame": [[n] for n in numbers]}
        seconds = {(shape, path): 0.0 for shape in shapes for path in PATHS}
        for round_ in range(rounds):
            for path in PATHS if round_ % 2 == 0 else PATHS[::-1]:
                for shape, requests in shapes.items():
                    started = time.perf_counter()
                    for frames in requests:
                        await runs[path](frames)
                    seconds[shape, path] += time.perf_counter() - started
    fps = {key: rounds * len(numbers) / spent for key, spent in seconds.items()}
    ratio: dict[str, Any] = {"model": name, "frames": len(numbers), "rounds": rounds}
    for shape in shapes:
        figures = {f"{path}_fps": round(fps[shape, path], 2) for path in PATHS}
        figures |= {
            "http_over_adapter": round(fps[shape, "http"] / fps[shape, "adapter"], 3),
            "http_over_pipeline": round(fps[shape, "http"] / fps[shape, "pipeline"], 3),
            "pipeline_over_adapter": round(fps[shape, "pipeline"] / fps[shape, "adapter"], 3),
        }
        if shape == "request":
            ratio |= figures
        else:
            ratio[shape] = figures
    ratio["goal"] = GOALS["http_over_pipeline"]
    ratio["goals"] = GOALS
    return ratio


def run_bench(
    config: Config, models: list[str], frames: int, out: Path, console: Console
) -> dict[str, Any]:
    samples = install_samples(config.media_dir)
    video = "samples/bikes.mp4"
    with MediaSource.open(samples["bikes.mp4"]) as media:
        numbers = _frame_numbers(media.frame_count, frames)
        images = {f.number: f.image for f in media.read(numbers)}

    async def per_model() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        manager = ModelManager(config)
        try:
            names = models or [selected_model(manager, "object_detection", None)]
            rows = []
            for name in names:
                if name not in manager.states:
                    rows.append(failed_row(_ROW_KEYS, name, None, KeyError("not in the config")))
                    continue
                rows.append(await _measure_or_report(manager, name, list(images.values())))
            # Throughput: the first detector measured without error (the others' rows stand).
            target = next(
                (r["model"] for r in rows if not r.get("error") and r["seconds_per_frame"]),
                None,
            )
            if target is None:
                return rows, None
            with BackgroundServer(config) as server:
                return rows, await _side_by_side(manager, target, images, video, server.url, 3)
        finally:
            await manager.close()

    rows, ratio = asyncio.run(per_model())
    report = {"models": rows, "http_vs_in_process": ratio, "criteria": CRITERIA}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    (out / "bench.md").write_text(_markdown(report))
    render_rows(console, rows, SUMMARY_COLUMNS, title="models (every column: bench.md)")
    console.print(_markdown({"models": [], "http_vs_in_process": ratio}), markup=False)
    console.print(f"written: {out / 'bench.md'}, {out / 'bench.json'}", soft_wrap=True)
    return report


def _markdown(report: dict[str, Any]) -> str:
    rows = report["models"]
    lines = [markdown_table(rows)] if rows else []
    r = report["http_vs_in_process"]
    if r is None:
        lines.append("no model was measured without error: throughput comparison skipped")
        return "\n".join(lines) + "\n"
    one = r["one_frame"]
    lines += [
        "",
        f"Throughput on {r['frames']} frames of bikes.mp4 with {r['model']}, side by side "
        f"({r['rounds']} alternating rounds); frames/s for one request of every frame, and for "
        "one-frame requests:",
        "",
        "| path | frames/s | HTTP / this | one-frame frames/s | HTTP / this |",
        "|---|---|---|---|---|",
        f"| adapter on decoded frames | {r['adapter_fps']} | {r['http_over_adapter']} "
        f"| {one['adapter_fps']} | {one['http_over_adapter']} |",
        f"| detect pipeline in process (decode + infer) | {r['pipeline_fps']} "
        f"| {r['http_over_pipeline']} | {one['pipeline_fps']} | {one['http_over_pipeline']} |",
        f"| HTTP POST /api/detect | {r['http_fps']} | 1.0 | {one['http_fps']} | 1.0 |",
        "",
        f"pipeline / adapter: {r['pipeline_over_adapter']} (one-frame "
        f"{one['pipeline_over_adapter']}; goal >= {r['goals']['pipeline_over_adapter']}); "
        f"HTTP / pipeline goal >= {r['goal']}",
    ]
    return "\n".join(lines) + "\n"
