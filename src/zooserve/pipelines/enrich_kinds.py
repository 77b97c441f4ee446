"""What each model kind does in an enrichment stage, and the JSON-ready values it leaves.

The enrich pipeline decides *where* a stage runs (crops, frames, a clip); this module runs the
kind's one method through `manager.infer` in batches and turns its result type into a value:

| kind | value per input |
|---|---|
| detector | `sv.Detections` in input pixels (the pipeline turns them into child detections) |
| classifier | `{label, score, scores}` (top_k best, high to low) |
| embedder | `{dim, vector?}` (the L2-normalised vector only when embeddings are asked for) |
| segmenter | `{dominant, fractions}`: share of the input's pixels per class |
| ocr | `{text, score, lines, coordinates}`: line boxes in frame pixels (`in_frame`) |
| quality | `{score, flags, details}` |
| depth | the float32 map (H, W), 0 = nearest; summarised per box or per frame below |

A dual model (CLIP: classifier and embedder) classifies when the trigger gives `labels` and
embeds otherwise. Pose and action take whole frames (see `pose_values`, `action_value`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zooserve.catalog.zoo import TriggerSpec
from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector, Image, ModelAdapter
from zooserve.families.kinds import (
    ActionRecognizer,
    Classifier,
    DepthEstimator,
    Embedder,
    OcrReader,
    PoseEstimator,
    QualityScorer,
    Segmenter,
)
from zooserve.manager import ModelManager
from zooserve.pipelines.detecting import batch_size

log = logging.getLogger("zooserve.pipelines.enrich")
#: Crops per model call in a stage when `options.batch_size` is unset (crops are small).
ENRICH_BATCH_SIZE = 16


class InvalidTrigger(InvalidInput):
    """A trigger asks a model for something its kind cannot do (e.g. an OCR model on a clip)."""

    code = "invalid_trigger"


def embeds(adapter: ModelAdapter, trigger: TriggerSpec) -> bool:
    """True when this stage wants vectors: an embedder, unless a classifier given labels."""
    if not isinstance(adapter, Embedder):
        return False
    return not (isinstance(adapter, Classifier) and trigger.labels)


async def image_values(
    manager: ModelManager,
    adapter: ModelAdapter,
    trigger: TriggerSpec,
    images: Sequence[Image],
    *,
    prompts: Sequence[str] | None,
    include_embeddings: bool,
) -> list[Any]:
    """Run the adapter's kind method over `images` in batches; one value per image."""
    run: Callable[[Sequence[Image]], list[Any]]
    if isinstance(adapter, Detector):
        queries = (trigger.labels or prompts) if adapter.open_vocabulary else None
        run = _detector(adapter, queries, trigger)
    elif embeds(adapter, trigger):
        run = _embedder(adapter, include_embeddings)  # type: ignore[arg-type]
    elif isinstance(adapter, Classifier):
        run = _classifier(adapter, trigger)
    elif isinstance(adapter, Segmenter):
        run = _segmenter(adapter)
    elif isinstance(adapter, OcrReader):
        run = _ocr(adapter)
    elif isinstance(adapter, QualityScorer):
        run = _quality(adapter)
    elif isinstance(adapter, DepthEstimator):
        run = adapter.estimate_depth
    else:
        raise InvalidTrigger(
            f"trigger {trigger.name!r}: model {adapter.spec.name!r} is a {adapter.kind}, which "
            f"cannot run with scope {trigger.scope!r}",
            {"trigger": trigger.name, "kind": adapter.kind, "scope": trigger.scope},
        )
    size = batch_size(adapter.spec, ENRICH_BATCH_SIZE)
    values: list[Any] = []
    for start in range(0, len(images), size):
        values += await manager.infer(run, list(images[start : start + size]))
    return values


def _detector(
    adapter: Detector, queries: Sequence[str] | None, trigger: TriggerSpec
) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        found = adapter.detect(images, queries, trigger.threshold)
        if trigger.max_detections is None:
            return found
        best = []
        for detections in found:
            order = np.argsort(-np.asarray(detections.confidence), kind="stable")
            best.append(detections[order[: trigger.max_detections]])
        return best

    return run


def _classifier(
    adapter: Classifier, trigger: TriggerSpec
) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        return [
            classification(scores, trigger.top_k)
            for scores in adapter.classify(images, trigger.labels)
        ]

    return run


def classification(scores: dict[str, float], top_k: int) -> dict[str, Any]:
    """{label, score, scores}: the best label and the top_k scores, high to low."""
    ordered = sorted(scores.items(), key=lambda item: -item[1])[:top_k]
    if not ordered:
        return {"label": None, "score": 0.0, "scores": {}}
    return {
        "label": ordered[0][0],
        "score": float(ordered[0][1]),
        "scores": {k: float(v) for k, v in ordered},
    }


def _embedder(adapter: Embedder, include: bool) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        vectors = np.asarray(adapter.embed_images(images), dtype=np.float32)
        return [
            {"dim": int(v.shape[0]), **({"vector": v.tolist()} if include else {})} for v in vectors
        ]

    return run


def _segmenter(adapter: Segmenter) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        return [segment_fractions(m, adapter.labels) for m in adapter.segment(images)]

    return run


def segment_fractions(label_map: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Share of pixels per class present (>= 0.5 %), and the largest non-background class."""
    ids = np.asarray(label_map).ravel().astype(np.int64)
    counts = np.bincount(ids[ids >= 0], minlength=len(labels)) if ids.size else np.zeros(0)
    total = max(1, ids.size)
    fractions = {
        (labels[i] if i < len(labels) else f"class_{i}"): round(float(counts[i]) / total, 4)
        for i in np.argsort(-counts, kind="stable")
        if counts[i] / total >= 0.005
    }
    dominant = next((k for k in fractions if "background" not in k.lower()), None)
    return {"dominant": dominant, "fractions": fractions}


def _ocr(adapter: OcrReader) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        values = []
        for lines in adapter.read(images):
            scores = [line.score for line in lines]
            values.append(
                {
                    "text": " ".join(line.text for line in lines).strip(),
                    "score": float(np.mean(scores)) if scores else 0.0,
                    "lines": [
                        {
                            "text": line.text,
                            "score": float(line.score),
                            "box": None if line.box is None else [float(v) for v in line.box],
                        }
                        for line in lines
                    ],
                }
            )
        return values

    return run


#: How every OCR value labels its line boxes: xyxy pixels of the frame, whatever was read.
OCR_COORDINATES = "frame_pixels"


def in_frame(value: Any, offset: tuple[int, int]) -> Any:
    """An OCR value read from a crop whose top-left corner is `offset` in the frame, with its
    line boxes moved into frame pixels and labelled so (other values pass through)."""
    if not (isinstance(value, dict) and "lines" in value):
        return value
    dx, dy = offset
    lines = [
        {
            **line,
            "box": None
            if line.get("box") is None
            else [
                round(float(v) + (dx if i % 2 == 0 else dy), 2) for i, v in enumerate(line["box"])
            ],
        }
        for line in value["lines"]
    ]
    return {**value, "lines": lines, "coordinates": OCR_COORDINATES}


async def read_text(
    manager: ModelManager, model: str, images: Sequence[Image]
) -> list[dict[str, Any]]:
    """Whole frames through an OCR model: `{text, score, lines, coordinates}` per frame, line
    boxes in frame pixels (for callers outside the zoo's triggers, e.g. summaries)."""
    trigger = TriggerSpec(name="text", model=model, scope="frame")
    async with manager.use(model) as adapter:
        if not isinstance(adapter, OcrReader):
            raise InvalidTrigger(
                f"model {model!r} is a {adapter.kind}, not an OCR model",
                {"model": model, "kind": adapter.kind},
            )
        values = await image_values(
            manager, adapter, trigger, images, prompts=None, include_embeddings=False
        )
    return [in_frame(v, (0, 0)) for v in values]


def text_trigger(triggers: Sequence[TriggerSpec], name: str = "text") -> TriggerSpec | None:
    """The zoo's whole-frame text trigger (scope frame), if the config has one."""
    return next((t for t in triggers if t.name == name and t.scope == "frame"), None)


def _quality(adapter: QualityScorer) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        return [
            {
                "score": float(q.score),
                "flags": {k: bool(v) for k, v in q.flags.items()},
                "details": {k: float(v) for k, v in q.details.items()},
            }
            for q in adapter.score(images)
        ]

    return run


# --- whole-frame kinds ------------------------------------------------------------------------


async def pose_values(
    manager: ModelManager, adapter: ModelAdapter, trigger: TriggerSpec, image: Image, boxes: Any
) -> list[dict[str, Any]]:
    """Keypoints (17 COCO: x px, y px, score) and posture for each person box of one frame."""
    if not isinstance(adapter, PoseEstimator):
        raise InvalidTrigger(
            f"trigger {trigger.name!r}: model {adapter.spec.name!r} is a {adapter.kind}; "
            "only pose models run per person box",
            {"trigger": trigger.name, "kind": adapter.kind},
        )
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    keypoints = await manager.infer(adapter.estimate_pose, image, boxes)
    classify = _optional("zooserve.pipelines.posture", "posture")
    values = []
    for points in np.asarray(keypoints, dtype=np.float32):
        value: dict[str, Any] = {"keypoints": points.round(2).tolist()}
        if classify is not None:
            value["posture"] = classify(points)
        values.append(value)
    return values


async def action_value(
    manager: ModelManager, adapter: ModelAdapter, trigger: TriggerSpec, frames: Sequence[Image]
) -> dict[str, Any]:
    """The clip's actions among the trigger's labels: {label, score, scores}."""
    if not isinstance(adapter, ActionRecognizer):
        raise InvalidTrigger(
            f"trigger {trigger.name!r}: scope 'clip' needs an action model; "
            f"{adapter.spec.name!r} is a {adapter.kind}",
            {"trigger": trigger.name, "kind": adapter.kind},
        )
    if not trigger.labels:
        raise InvalidTrigger(
            f"trigger {trigger.name!r}: an action model needs candidate actions in `labels`",
            {"trigger": trigger.name},
        )
    scores = await manager.infer(adapter.recognize, list(frames), trigger.labels)
    return classification(scores, trigger.top_k)


def depth_at_box(depth_map: np.ndarray, box: Sequence[float]) -> dict[str, float]:
    """Relative distance of one detection: the median of the depth map over its box."""
    measure = _optional("zooserve.families.hf.depth_anything", "relative_distance")
    if measure is not None:
        return {"relative_distance": round(float(measure(depth_map, box)), 4)}
    height, width = depth_map.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    region = depth_map[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else depth_map
    return {"relative_distance": round(float(np.median(region)), 4)}


def depth_summary(depth_map: np.ndarray) -> dict[str, float]:
    """A whole frame's depth: nearest, median and farthest values."""
    values = np.asarray(depth_map, dtype=np.float32)
    return {
        "min": round(float(values.min()), 4),
        "median": round(float(np.median(values)), 4),
        "max": round(float(values.max()), 4),
    }


def aggregate(values: Sequence[Any]) -> dict[str, Any]:
    """One value for a batch from per-frame values: mean class scores, or mean quality."""
    dicts = [v for v in values if isinstance(v, dict)]
    if dicts and all("scores" in v for v in dicts):
        totals: dict[str, float] = {}
        for value in dicts:
            for label, score in value["scores"].items():
                totals[label] = totals.get(label, 0.0) + score / len(dicts)
        return {**classification(totals, len(totals)), "frames": len(dicts)}
    if dicts and all("flags" in v for v in dicts):
        flags = sorted({k for v in dicts for k in v["flags"]})
        return {
            "score": float(np.mean([v["score"] for v in dicts])),
            "min_score": float(min(v["score"] for v in dicts)),
            "flagged_fraction": {
                k: sum(bool(v["flags"].get(k)) for v in dicts) / len(dicts) for k in flags
            },
            "frames": len(dicts),
        }
    return {"frames": len(values)}


def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """A helper from a module that may not exist in this version (imported lazily)."""
    try:
        found: Callable[..., Any] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        log.debug("%s.%s is not available", module, name)
        return None
    return found
