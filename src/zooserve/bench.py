"""`zooserve bench`: the model-zoo benchmark, measured on the device of this process.

Per model: measured memory, peak, load seconds, inference seconds per frame, memory recovered
after unload, against the seed's success criteria (< 1500 MB, < 5 s load, recovered). Then a
side-by-side ratio: HTTP /api/detect throughput / in-process throughput (the bare adapter on
decoded frames, and the detect pipeline without HTTP), same frames, same run.
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
from rich.markup import escape
from rich.table import Table

from zooserve.api.server import BackgroundServer
from zooserve.catalog import Config
from zooserve.errors import ZooError
from zooserve.families.base import Detector
from zooserve.manager import ModelManager
from zooserve.media import MediaSource
from zooserve.memory import MB
from zooserve.pipelines.detect import detect
from zooserve.pipelines.selection import selected_model
from zooserve.samples import install_samples

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


def error_text(exc: BaseException) -> str:
    """One line for a table cell: the error code and message (ZooError) or type and text."""
    if isinstance(exc, ZooError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def nothing_measured(rows: list[dict[str, Any]]) -> str | None:
    """Why a run measured nothing (every row failed, or there were none); None otherwise."""
    if any(not row.get("error") for row in rows):
        return None
    if not rows:
        return "no model to measure here (see `zooserve models list`)"
    return "; ".join(f"{row.get('model') or row.get('tracker')}: {row['error']}" for row in rows)


def failed_row(keys: list[str], name: str, family: str | None, exc: BaseException) -> dict:
    """A row for a model that could not be measured: its error, every measurement empty."""
    row: dict[str, Any] = dict.fromkeys(keys)
    row.update(model=name, family=family, error=error_text(exc))
    return row


def render_rows(
    console: Console, rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str
) -> None:
    """Rows a person can read at 80 columns: on a terminal, a table of the key columns whose
    cells wrap (never "ow…"), then each failed model's error on its own lines; otherwise
    (piped, redirected) Markdown with every key."""
    if not console.is_terminal:
        text = markdown_table(rows).rstrip("\n")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=title)
    for _, header in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        cells = [_cell(row.get(key)) for key, _ in columns]
        if row.get("error"):
            cells[-1] = "[red]error[/red]"
        table.add_row(*cells)
    console.print(table)
    for row in rows:
        if row.get("error"):
            console.print(f"[red]{escape(str(row['model']))}[/red]: {escape(str(row['error']))}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Every key of every row (the union, in first-seen order) as a Markdown table."""
    if not rows:
        return ""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = ["" if row.get(k) is None else str(row.get(k)).replace("|", "\\|") for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


async def _in_process_throughput(
    manager: ModelManager, name: str, images: list[Any], video: str, numbers: list[int], reps: int
) -> tuple[float, float]:
    """Frames/s of (a) the bare adapter on already-decoded frames and (b) the detect pipeline
    without HTTP (decode + inference), on the same frames."""
    async with manager.use(name) as adapter:
        assert isinstance(adapter, Detector)
        prompts = manager.config.default_prompts if adapter.open_vocabulary else None
        started = time.perf_counter()
        for _ in range(reps):
            await manager.infer(adapter.detect, images, prompts, 0.3)
        bare = reps * len(images) / (time.perf_counter() - started)
    await detect(manager, video, numbers, model=name)  # warm
    started = time.perf_counter()
    for _ in range(reps):
        await detect(manager, video, numbers, model=name, confidence_threshold=0.3)
    return bare, reps * len(numbers) / (time.perf_counter() - started)


def _http_throughput(url: str, name: str, video: str, numbers: list[int], reps: int) -> float:
    body = {
        "video_path": video,
        "frame_numbers": numbers,
        "model": name,
        "confidence_threshold": 0.3,
    }
    with httpx.Client(timeout=600) as client:
        client.post(f"{url}/api/detect", json=body).raise_for_status()  # load + warm
        started = time.perf_counter()
        for _ in range(reps):
            client.post(f"{url}/api/detect", json=body).raise_for_status()
        return reps * len(numbers) / (time.perf_counter() - started)


def run_bench(
    config: Config, models: list[str], frames: int, out: Path, console: Console
) -> dict[str, Any]:
    samples = install_samples(config.media_dir)
    video = "samples/bikes.mp4"
    with MediaSource.open(samples["bikes.mp4"]) as media:
        numbers = _frame_numbers(media.frame_count, frames)
        images = [f.image for f in media.read(numbers)]

    async def per_model() -> tuple[list[dict[str, Any]], str | None, tuple[float, float]]:
        manager = ModelManager(config)
        try:
            names = models or [selected_model(manager, "object_detection", None)]
            rows = []
            for name in names:
                if name not in manager.states:
                    rows.append(failed_row(_ROW_KEYS, name, None, KeyError("not in the config")))
                    continue
                rows.append(await _measure_or_report(manager, name, images))
            # Throughput: the first detector measured without error (the others' rows stand).
            target = next(
                (r["model"] for r in rows if not r.get("error") and r["seconds_per_frame"]),
                None,
            )
            if target is None:
                return rows, None, (0.0, 0.0)
            speeds = await _in_process_throughput(manager, target, images, video, numbers, 3)
            return rows, target, speeds
        finally:
            await manager.close()

    rows, target, (bare, pipeline) = asyncio.run(per_model())
    ratio: dict[str, Any] | None = None
    if target is not None:
        with BackgroundServer(config) as server:
            over_http = _http_throughput(server.url, target, video, numbers, reps=3)
        ratio = {
            "model": target,
            "frames": len(numbers),
            "adapter_fps": round(bare, 2),
            "pipeline_fps": round(pipeline, 2),
            "http_fps": round(over_http, 2),
            "http_over_adapter": round(over_http / bare, 3),
            "http_over_pipeline": round(over_http / pipeline, 3),
            "goal": 0.95,
        }
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
    lines += [
        "",
        f"Throughput on {r['frames']} frames of bikes.mp4 with {r['model']}, side by side:",
        "",
        "| path | frames/s | HTTP / this |",
        "|---|---|---|",
        f"| adapter on decoded frames | {r['adapter_fps']} | {r['http_over_adapter']} |",
        f"| detect pipeline in process (decode + infer) | {r['pipeline_fps']} "
        f"| {r['http_over_pipeline']} |",
        f"| HTTP POST /api/detect | {r['http_fps']} | 1.0 |",
        "",
        f"goal: HTTP / in-process >= {r['goal']}",
    ]
    return "\n".join(lines) + "\n"
