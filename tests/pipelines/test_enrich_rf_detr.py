"""RF-DETR as the detector that fires the zoo's person/vehicle triggers (issue #19): the
README's config example, on the tiny random RF-DETR (its COCO-style labels from the checkpoint)
and OpenCV's shipped face cascade as the trigger's model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import TinyModels
from tests.tiny.rf_detr import LABELS
from zooserve.catalog import Config
from zooserve.manager import ModelManager
from zooserve.pipelines.enrich import enrich

pytestmark = pytest.mark.asyncio(loop_scope="module")
#: What the README example fires on.
TRIGGER_CLASSES = ["person", "car", "truck", "bus", "motorcycle", "bicycle"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def manager(media_root: Path, tiny_models: TinyModels) -> AsyncIterator[ModelManager]:
    config = Config.model_validate(
        {
            "device": "cpu",
            "media_root": str(media_root),
            "tasks": {"object_detection": {"selected": "rf-detr", "options": ["rf-detr"]}},
            "models": {
                "rf-detr": {
                    "model_id": str(tiny_models.path("rf_detr")),
                    "family": "rf_detr",
                    "options": {"labels": "coco"},
                },
                "face": {
                    "model_id": "opencv:haarcascade_frontalface_default.xml",
                    "family": "opencv_cascade",
                    "framework": "opencv",
                    "options": {"label": "face"},
                },
            },
            "zoo": {
                "triggers": [
                    {
                        "name": "faces",
                        "model": "face",
                        "when": {"classes": TRIGGER_CLASSES, "min_confidence": 0.5},
                    }
                ]
            },
        }
    )
    running = ModelManager(config)
    yield running
    await running.close()


async def test_rf_detr_detections_fire_the_person_vehicle_trigger(manager: ModelManager) -> None:
    result = await enrich(manager, "walk.mp4", [0, 5], confidence_threshold=0.5)

    assert result.detector == "rf-detr" and not result.errors
    found = [str(name) for frame in result.frames for name in frame.detections.data["class_name"]]
    assert set(found) <= set(LABELS)
    (stage,) = result.stages
    matching = [name for name in found if name in TRIGGER_CLASSES]
    assert matching, "the tiny RF-DETR reports people or vehicles at 0.5"
    assert stage.status == "ok" and stage.inputs == len(matching)
