"""How each model kind runs in an enrichment stage: its one method through `manager.infer`, in
batches, each result made into its value (enrich_values.py says what the values hold).

The enrich pipeline decides *where* a stage runs (crops, frames, a clip). A dual model (CLIP:
classifier and embedder) classifies when the trigger gives `labels` and embeds otherwise. Pose
and action take whole frames (see `pose_values`, `action_value`); `read_text` reads whole
frames for callers outside the triggers.
"""

from __future__ import annotations

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
from zooserve.pipelines import enrich_values as values
from zooserve.pipelines.detecting import batch_size

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
    outputs: list[Any] = []
    for start in range(0, len(images), size):
        outputs += await manager.infer(run, list(images[start : start + size]))
    return outputs


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
            values.classification(scores, trigger.top_k)
            for scores in adapter.classify(images, trigger.labels)
        ]

    return run


def _embedder(adapter: Embedder, include: bool) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        vectors = np.asarray(adapter.embed_images(images), dtype=np.float32)
        return [values.embedding(vector, include) for vector in vectors]

    return run


def _segmenter(adapter: Segmenter) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        return [values.segment_fractions(m, adapter.labels) for m in adapter.segment(images)]

    return run


def _ocr(adapter: OcrReader) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        return [values.text_read(lines) for lines in adapter.read(images)]

    return run


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
        read = await image_values(
            manager, adapter, trigger, images, prompts=None, include_embeddings=False
        )
    return [values.in_frame(v, (0, 0)) for v in read]


def text_trigger(triggers: Sequence[TriggerSpec], name: str = "text") -> TriggerSpec | None:
    """The zoo's whole-frame text trigger (scope frame), if the config has one."""
    return next((t for t in triggers if t.name == name and t.scope == "frame"), None)


def _quality(adapter: QualityScorer) -> Callable[[Sequence[Image]], list[Any]]:
    def run(images: Sequence[Image]) -> list[Any]:
        return [values.quality(result) for result in adapter.score(images)]

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
    return [values.pose(points) for points in np.asarray(keypoints, dtype=np.float32)]


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
    return values.classification(scores, trigger.top_k)
