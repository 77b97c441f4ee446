"""`zooserve bench --zoo`: the enrichment models, measured on the device of this process.

Per enabled and available zoo model: load seconds, measured MB, seconds per item of its kind's
method on real media (bikes.mp4 frames, skimage's astronaut and chelsea), and the memory
recovered by its unload. Then the zoo triggers over one batch (a person, a car and two persons,
a cat: fixed boxes on those real frames, so every seed rule has something to do) with a budget
that fits the largest model used (1.05x its measured size; smaller models may share it), in both
orders side by side: model-major (each model leased once) and the naive per-detection order
(each detection's whole chain in turn), loads and wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import supervision as sv
from rich.console import Console

from zooserve.catalog import Config
from zooserve.catalog.zoo import PRIMARY, TriggerSpec
from zooserve.families.base import Detector, Image, ModelAdapter, make_detections
from zooserve.families.kinds import ActionRecognizer, Classifier, PoseEstimator, Tracker
from zooserve.manager import ModelManager
from zooserve.media import Frame, MediaSource
from zooserve.media.samples import install_samples
from zooserve.pipelines import enrich_kinds as kinds
from zooserve.pipelines.enrich import EnrichResult, Order, enrich_frames
from zooserve.runtimes.memory import MB
from zooserve_bench.report import failed_row, markdown_table, render_rows

#: Models that are not enrichment models: language engines and the task-only categories.
_NOT_ZOO = {"tracking", "summarization", "ontology"}
_ENGINES = {"sglang", "vllm"}
_BOXES = {  # frame number -> (label, xyxy px) on the bench batch below
    0: [("person", (130, 0, 470, 512))],
    1: [
        ("car", (0, 30, 300, 272)),
        ("person", (340, 5, 500, 272)),
        ("person", (450, 40, 492, 150)),
    ],
    2: [("cat", (60, 20, 420, 300))],
}


#: Served for other tasks (language models, ontology de-duplication), not zoo enrichment.
_NOT_ZOO_FAMILIES = {"local_llm", "sentence_transformers", "detection_tracker"}


#: Primary detectors the person/vehicle/pet triggers fire on (task options, so not picked up
#: below): the offline YOLOv3-tiny (its people-found figures are in README "Offline
#: detectors"), RF-DETR N and M (COCO, Apache-2.0) and SAM 3 (by concept).
_TRIGGER_DETECTORS = ("yolov3-tiny-coco", "rf-detr-nano", "rf-detr-medium", "sam3")


def zoo_models(config: Config) -> list[str]:
    """Models the triggers use, plus every model outside the tasks that is not an engine."""
    in_tasks = {name for spec in config.tasks.values() for name in spec.options}
    used = [t.model for t in config.zoo.triggers]
    used += [name for name in _TRIGGER_DETECTORS if name in config.models]
    others = [
        name
        for name, spec in config.models.items()
        if name not in in_tasks
        and spec.category not in _NOT_ZOO
        and spec.framework not in _ENGINES
        and spec.family not in _NOT_ZOO_FAMILIES
    ]
    return list(dict.fromkeys([*used, *others]))


def bench_batch(config: Config) -> tuple[list[Frame], dict[int, sv.Detections]]:
    """The astronaut, bikes.mp4 frame 120 (a car, a cyclist, a passer-by), chelsea the cat."""
    samples = install_samples(config.media_dir)
    with MediaSource.open(samples["bikes.mp4"]) as video:
        (street,) = video.read([120])
    images = [skimage.data.astronaut(), street.image, skimage.data.chelsea()]
    frames = [Frame(i, float(i), image) for i, image in enumerate(images)]
    detections = {
        n: make_detections(
            np.array([box for _, box in items], np.float32),
            np.full(len(items), 0.9, np.float32),
            [label for label, _ in items],
            sorted({label for label, _ in items}),
        )
        for n, items in _BOXES.items()
    }
    return frames, detections


async def _exercise(manager: ModelManager, adapter: ModelAdapter, images: list[Image]) -> int:
    """Run the adapter's kind method once over `images`; returns how many items it processed."""
    trigger = TriggerSpec(name="bench", model=adapter.spec.name, labels=["a person", "a car"])
    if isinstance(adapter, PoseEstimator):
        for image in images:
            h, w = image.shape[:2]
            await kinds.pose_values(manager, adapter, trigger, image, [(0, 0, w, h)])
        return len(images)
    if isinstance(adapter, ActionRecognizer):
        await kinds.action_value(manager, adapter, trigger, images)
        return 1
    takes_labels = (isinstance(adapter, Classifier) and adapter.zero_shot) or (
        isinstance(adapter, Detector) and adapter.open_vocabulary
    )
    if not takes_labels:
        trigger = trigger.model_copy(update={"labels": None})
    await kinds.image_values(
        manager, adapter, trigger, images, prompts=None, include_embeddings=False
    )
    return len(images)


_ROW_KEYS = [
    "model",
    "family",
    "kind",
    "device",
    "load_seconds",
    "memory_mb",
    "estimate_mb",
    "seconds_per_item",
    "recovered_mb",
    "verified_unload",
]
#: The terminal table's columns (row key, short header); bench_zoo.md has every key.
SUMMARY_COLUMNS = [
    ("model", "model"),
    ("kind", "kind"),
    ("load_seconds", "load s"),
    ("memory_mb", "MB"),
    ("seconds_per_item", "s/item"),
    ("recovered_mb", "freed MB"),
]


async def _measure_or_report(
    manager: ModelManager, name: str, images: list[Image]
) -> dict[str, Any]:
    """The model's row; one that fails to load or run gets its error instead (the run goes on)."""
    try:
        return await _measure(manager, name, images)
    except Exception as exc:  # any model's failure is its row's, not the whole run's
        with contextlib.suppress(Exception):
            await manager.unload(name, reason="zoo benchmark")
        return failed_row(_ROW_KEYS, name, manager.states[name].spec.family, exc)


async def _measure(manager: ModelManager, name: str, images: list[Image]) -> dict[str, Any]:
    load = await manager.load(name, reason="zoo benchmark")
    state = manager.state(name)
    async with manager.use(name) as adapter:
        kind = adapter.kind
        if isinstance(adapter, Tracker):
            per_item = None
        else:
            await _exercise(manager, adapter, images[:1])  # warm caches
            started = time.perf_counter()
            items = await _exercise(manager, adapter, images)
            per_item = (time.perf_counter() - started) / items
    unload = await manager.unload(name, reason="zoo benchmark")
    return {
        "model": name,
        "family": state.spec.family,
        "kind": kind,
        "device": manager.device,
        "load_seconds": round(load["seconds"] or 0.0, 3),
        "memory_mb": round((load["bytes"] or 0) / MB, 2),
        "estimate_mb": state.spec.vram_mb,
        "seconds_per_item": None if per_item is None else round(per_item, 4),
        "recovered_mb": round(unload.get("recovered_bytes", 0) / MB, 2),
        "verified_unload": bool(unload.get("verified")),
    }


def runnable_triggers(config: Config, available: set[str]) -> list[str]:
    """Enabled triggers whose model, and every source's model, is available."""
    by_name = {t.name: t for t in config.zoo.triggers}
    names = []
    for trigger in config.zoo.triggers:
        chain, ok = trigger, trigger.enabled
        while ok:
            ok = chain.model in available
            if chain.source == PRIMARY:
                break
            chain = by_name[chain.source]
        if ok:
            names.append(trigger.name)
    return names


def _order_row(order: str, result: EnrichResult, seconds: float) -> dict[str, Any]:
    return {
        "order": order,
        "leases": len(result.loads),
        "loads": sum(load.loaded for load in result.loads),
        "evictions": sum(len(load.evicted) for load in result.loads),
        "seconds": round(seconds, 3),
        "errors": len(result.errors),
    }


async def _compare_orders(
    config: Config, budget_mb: float, measured_mb: dict[str, float], triggers: list[str]
) -> list[dict[str, Any]]:
    """Both orders on the bench batch, each with a fresh manager whose budget fits one model.

    Each model's estimate is set to its measured size, so admission knows before a load what
    it will take (the config's estimates may be rounder than the budget allows)."""
    frames, detections = bench_batch(config)
    models = {
        name: spec.model_copy(update={"vram_mb": measured_mb[name]})
        if name in measured_mb
        else spec
        for name, spec in config.models.items()
    }
    tight = config.model_copy(update={"memory_budget_mb": budget_mb, "models": models})
    rows = []
    orders: tuple[Order, ...] = ("per_detection", "model_major")
    for order in orders:
        manager = ModelManager(tight)
        try:
            started = time.perf_counter()
            result = await enrich_frames(
                manager, frames, detections, triggers=triggers, order=order
            )
            rows.append(_order_row(order, result, time.perf_counter() - started))
        finally:
            await manager.close()
    return rows


def run_zoo_bench(config: Config, out: Path, console: Console) -> dict[str, Any]:
    frames, _ = bench_batch(config)
    images = [f.image for f in frames]
    with MediaSource.open(install_samples(config.media_dir)["bikes.mp4"]) as video:
        images += [f.image for f in video.read([0, 60, 200])]

    async def measure_all() -> tuple[list[dict[str, Any]], list[str]]:
        manager = ModelManager(config)
        try:
            names = zoo_models(config)
            missing = [n for n in names if not manager.available(n)]
            rows = [await _measure_or_report(manager, n, images) for n in names if n not in missing]
            return rows, missing
        finally:
            await manager.close()

    rows, missing = asyncio.run(measure_all())
    measured_rows = [row for row in rows if not row.get("error")]
    available = {row["model"] for row in measured_rows}
    triggers = runnable_triggers(config, available)
    used = {t.model for t in config.zoo.triggers if t.name in triggers}
    budget_mb = max(
        (row["memory_mb"] for row in measured_rows if row["model"] in used), default=0.0
    )
    budget_mb = round(budget_mb * 1.05 + 0.01, 3)
    measured = {row["model"]: row["memory_mb"] for row in measured_rows}
    orders = asyncio.run(_compare_orders(config, budget_mb, measured, triggers)) if triggers else []
    comparison: dict[str, Any] = {"budget_mb": budget_mb, "triggers": triggers, "orders": orders}
    if len(orders) == 2:
        naive, major = orders
        comparison["loads_naive_over_model_major"] = round(
            naive["loads"] / max(1, major["loads"]), 2
        )
        comparison["time_naive_over_model_major"] = round(naive["seconds"] / major["seconds"], 2)
    report = {"models": rows, "unavailable": missing, "orders": comparison}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_zoo.json").write_text(json.dumps(report, indent=2))
    (out / "bench_zoo.md").write_text(_markdown(report))
    render_rows(console, rows, SUMMARY_COLUMNS, title="zoo models (every column: bench_zoo.md)")
    console.print(_markdown({**report, "models": []}), markup=False, soft_wrap=True)
    console.print(f"written: {out / 'bench_zoo.md'}, {out / 'bench_zoo.json'}", soft_wrap=True)
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    rows = report["models"]
    if rows:
        lines += [markdown_table(rows)]
    if report["unavailable"]:
        lines += [f"not available here (not measured): {', '.join(report['unavailable'])}", ""]
    comparison = report["orders"]
    if not comparison["orders"]:
        lines.append("no trigger has all its models available: order comparison skipped")
        return "\n".join(lines) + "\n"
    lines += [
        f"Triggers {', '.join(comparison['triggers'])} on 3 frames (a person; a car and two "
        f"persons; a cat), budget {comparison['budget_mb']} MB (fits the largest model used; "
        "smaller ones may share it), side by side:",
        "",
        "| order | leases | loads | evictions | seconds | errors |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['order']} | {r['leases']} | {r['loads']} | {r['evictions']} | {r['seconds']} "
        f"| {r['errors']} |"
        for r in comparison["orders"]
    ]
    lines += [
        "",
        f"naive / model-major: loads x{comparison.get('loads_naive_over_model_major')}, "
        f"time x{comparison.get('time_naive_over_model_major')}",
    ]
    return "\n".join(lines) + "\n"
