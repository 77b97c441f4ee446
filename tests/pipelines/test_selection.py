"""Task model selection on an offline machine: a request's texts choose a model that is present
and can see them (issue 12: tracking `face` with the shipped config failed on a missing YOLO)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.offline_models import cascade
from tests.track_scenes import Faces
from tests.tracked import frame_view
from zooserve.catalog import Config
from zooserve.core.errors import InvalidInput, ModelNotFound
from zooserve.manager import ModelManager
from zooserve.pipelines.selection import (
    is_available,
    label_for,
    plain,
    sees,
    selected_model,
    vocabulary,
)
from zooserve.pipelines.track import FrameRange, TrackReport, track

pytestmark = pytest.mark.asyncio(loop_scope="module")
DETECT, TRACK = "object_detection", "video_tracking"


def tracker(detector: str) -> dict[str, Any]:
    return {
        "model_id": "builtin:bytetrack",
        "family": "detection_tracker",
        "category": "tracking",
        "options": {"detector": detector},
    }


def offline_config(media: Path, **extra_models: dict[str, Any]) -> dict[str, Any]:
    """The shipped config's shape: hub models absent, OpenCV and MTCNN detectors present."""
    return {
        "device": "cpu",
        "media_root": str(media),
        "model_zoo_path": str(media / "zoo"),
        "tasks": {
            DETECT: {
                "selected": "owlv2-base",
                "options": ["owlv2-base", "opencv-hog-people", "opencv-face", "opencv-plate"],
            },
            TRACK: {
                "selected": "sam2.1-small",
                "options": [
                    "sam2.1-small",
                    "yolo11n-seg-bytetrack",
                    "hog-bytetrack",
                    "mtcnn-bytetrack",
                    "haar-face-bytetrack",
                ],
            },
        },
        "models": {
            "owlv2-base": {"model_id": "google/owlv2-base-patch16-ensemble", "family": "owlv2"},
            "opencv-hog-people": {
                "model_id": "opencv:hog_people",
                "family": "opencv_hog",
                "framework": "opencv",
                "options": {"label": "person"},
            },
            "opencv-face": cascade("haarcascade_frontalface_default.xml", "face"),
            "opencv-plate": cascade("haarcascade_russian_plate_number.xml", "license_plate"),
            "mtcnn-face": {"model_id": "facenet-pytorch:mtcnn", "family": "mtcnn"},
            "yolo11n-seg": {
                "model_id": "{MODEL_ZOO_PATH}/yolo11n-seg.pt",
                "family": "yolo",
                "framework": "ultralytics",
                "options": {"labels": "coco"},
            },
            "sam2.1-small": {
                "model_id": "facebook/sam2.1-hiera-small",
                "family": "sam2",
                "category": "tracking",
            },
            "yolo11n-seg-bytetrack": tracker("yolo11n-seg"),
            "hog-bytetrack": tracker("opencv-hog-people"),
            "mtcnn-bytetrack": tracker("mtcnn-face"),
            "haar-face-bytetrack": tracker("opencv-face"),
            **extra_models,
        },
    }


def manager_for(config: dict[str, Any]) -> ModelManager:
    return ModelManager(Config.model_validate(config))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selection-media")
    Faces().write(root / "faces.mp4")
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def offline(media: Path) -> AsyncIterator[ModelManager]:
    manager = manager_for(offline_config(media))
    yield manager
    await manager.close()


async def test_a_tracker_is_available_only_if_its_detector_is(offline: ModelManager) -> None:
    assert not offline.available("yolo11n-seg-bytetrack")  # /models/info says the same
    assert not is_available(offline, "yolo11n-seg-bytetrack")  # yolo11n-seg.pt is absent
    assert is_available(offline, "mtcnn-bytetrack") and is_available(offline, "hog-bytetrack")
    assert not is_available(offline, "sam2.1-small") and not is_available(offline, "no-such")


async def test_vocabularies_come_from_the_config(offline: ModelManager) -> None:
    assert vocabulary(offline, "owlv2-base") is None  # open vocabulary
    assert vocabulary(offline, "mtcnn-face") == {"face"}  # the family's own label
    assert vocabulary(offline, "opencv-plate") == {"license plate"}
    assert vocabulary(offline, "mtcnn-bytetrack") == {"face"}  # what its detector sees
    coco = vocabulary(offline, "yolo11n-seg")
    assert coco is not None and len(coco) == 80 and {"person", "traffic light"} <= coco
    # SAM2 gets its first boxes from the detection task: what its present detectors see.
    assert vocabulary(offline, "sam2.1-small") == {"person", "face", "license plate"}
    assert sees(offline, "hog-bytetrack", ["people", "a Person"])
    assert not sees(offline, "hog-bytetrack", ["face"])
    assert label_for("Faces", frozenset({"face"})) == "face"
    assert label_for("licence plate", frozenset({"license plate"})) == "license plate"
    assert plain("The License_Plate") == "license plate"


async def test_tracking_picks_a_present_model_that_sees_the_prompt(offline: ModelManager) -> None:
    assert selected_model(offline, TRACK, None, ["face"]) == "mtcnn-bytetrack"
    assert selected_model(offline, TRACK, None, ["person"]) == "hog-bytetrack"
    assert selected_model(offline, TRACK, None, ["people"]) == "hog-bytetrack"
    # No texts (box prompts): the first present option, never the detector-less YOLO tracker.
    assert selected_model(offline, TRACK, None, None) == "hog-bytetrack"
    assert selected_model(offline, DETECT, None, ["a face"]) == "opencv-face"
    assert selected_model(offline, DETECT, None, ["license plate"]) == "opencv-plate"


async def test_an_explicit_model_never_falls_back(offline: ModelManager) -> None:
    assert selected_model(offline, TRACK, "yolo11n-seg-bytetrack", ["face"]) == (
        "yolo11n-seg-bytetrack"
    )
    with pytest.raises(ModelNotFound):
        selected_model(offline, TRACK, "no-such-model", None)


async def test_a_prompt_nothing_present_can_see_is_a_422_listing_what_can(
    offline: ModelManager,
) -> None:
    with pytest.raises(InvalidInput) as raised:
        selected_model(offline, TRACK, None, ["face", "giraffe"])
    assert raised.value.status == 422
    # The tracking task's present trackers see faces and people (no plate tracker is listed).
    assert "'giraffe'" in raised.value.message and "face, person" in raised.value.message
    details = raised.value.details
    assert details["prompts"] == ["giraffe"]
    assert details["servable_labels"] == ["face", "person"]
    assert details["open_vocabulary_models"] == []


async def test_an_open_vocabulary_detector_sees_anything(media: Path, tmp_path: Path) -> None:
    weights = tmp_path / "owl"  # present on disk: nothing loads during selection
    weights.mkdir()
    config = offline_config(media)
    config["models"]["owlv2-base"]["model_id"] = str(weights)
    manager = manager_for(config)
    try:
        assert selected_model(manager, DETECT, None, ["giraffe"]) == "owlv2-base"
        # SAM2 is still absent; the first tracker whose detector sees a giraffe: none but
        # SAM2 could, so the 422 names the open-vocabulary detector that is present.
        with pytest.raises(InvalidInput) as raised:
            selected_model(manager, TRACK, None, ["giraffe"])
        assert raised.value.details["available_models"][0] == "hog-bytetrack"
    finally:
        await manager.close()


async def test_nothing_present_leaves_the_clear_not_present_error(media: Path) -> None:
    config = offline_config(media)
    config["tasks"][DETECT] = {"selected": "owlv2-base", "options": ["owlv2-base"]}
    manager = manager_for(config)
    try:
        assert selected_model(manager, DETECT, None, ["face"]) == "owlv2-base"
    finally:
        await manager.close()


async def test_the_chosen_offline_face_tracker_follows_two_real_faces(
    offline: ModelManager,
) -> None:
    """MTCNN + ByteTrack, as selection picks it for `face`, on two astronauts sliding apart."""
    name = selected_model(offline, TRACK, None, ["face"])
    report = TrackReport()
    frames = [
        frame_view(frame)
        async for frame in track(
            offline,
            "faces.mp4",
            FrameRange(0, 11),
            prompts=["face"],
            tracking_model=name,
            report=report,
        )
    ]
    assert report.detector == "mtcnn-face"
    assert {o.object_id for f in frames for o in f.objects} == {1, 2}
    for frame in frames:
        assert sorted(o.object_id for o in frame.objects if not o.occluded) == [1, 2]
    start = {o.object_id: o.box[0] for o in frames[0].objects}
    end = {o.object_id: o.box[0] for o in frames[-1].objects}
    left, right = sorted(start, key=start.__getitem__)
    assert end[left] - start[left] == pytest.approx(22, abs=4)  # A moves right 2 px/frame
    assert end[right] - start[right] == pytest.approx(-22, abs=4)  # B moves left
