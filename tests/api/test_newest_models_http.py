"""Issue #19's config contract over HTTP (a real server on 127.0.0.1): entries with
`model_id: <local folder>` and the new families' `family:` serve /api/detect and /api/track like
every other family, on tiny random checkpoints of the real architectures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.conftest import TinyModels
from tests.tiny.rf_detr import LABELS
from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config
from zooserve.media.rle import encode_mask

#: The shared test video (tests/conftest.py): 30 frames of 192x128.
WIDTH, HEIGHT = 192, 128
#: Around the astronaut in frame 0.
BOX = [10, 10, 110, 120]


@pytest.fixture(scope="module")
def newest_server(
    tmp_path_factory: pytest.TempPathFactory, media_root: Path, tiny_models: TinyModels
) -> Iterator[BackgroundServer]:
    config = {
        "device": "cpu",
        "memory_budget_mb": 64,
        "media_root": str(media_root),
        "tasks": {
            "object_detection": {"selected": "rfdetr", "options": ["rfdetr", "sam3"]},
            "video_tracking": {"selected": "edgetam", "options": ["edgetam", "sam3-video"]},
        },
        "models": {
            "rfdetr": {"model_id": str(tiny_models.path("rf_detr")), "family": "rf_detr"},
            "sam3": {"model_id": str(tiny_models.path("sam3")), "family": "sam3"},
            "edgetam": {
                "model_id": str(tiny_models.path("edgetam")),
                "family": "edgetam",
                "category": "tracking",
            },
            "sam3-video": {
                "model_id": str(tiny_models.path("sam3_video")),
                "family": "sam3_tracker",
                "category": "tracking",
            },
        },
    }
    path = tmp_path_factory.mktemp("newest-config") / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path)) as server:
        yield server


@pytest.fixture
def http(newest_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=newest_server.url, timeout=120) as client:
        yield client


def boxes_inside_frame(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every detection of every frame, after checking its box lies inside the frame."""
    found = [d for frame in frames for d in frame["detections"]]
    for detection in found:
        box = detection["bbox"]
        assert 0 <= box["x1"] <= box["x2"] <= WIDTH, box
        assert 0 <= box["y1"] <= box["y2"] <= HEIGHT, box
    return found


def test_rf_detr_labels_come_from_the_checkpoint(http: httpx.Client) -> None:
    response = http.post(
        "/api/detect",
        json={
            "video_path": "walk.mp4",
            "frame_numbers": [0, 5],
            "model": "rfdetr",
            "confidence_threshold": 0.5,
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "rfdetr"
    assert [f["frame_number"] for f in body["frames"]] == [0, 5]
    found = boxes_inside_frame(body["frames"])
    assert found, "the tiny RF-DETR reports boxes at 0.5"
    assert {d["label"] for d in found} <= set(LABELS)


def test_rf_detr_prompts_keep_the_labels_they_name(http: httpx.Client) -> None:
    """A closed-vocabulary detector reports its own classes; prompts keep those they name."""

    def labels(prompts: list[str] | None) -> list[str]:
        body = {"video_path": "walk.mp4", "frame_numbers": [0, 5], "model": "rfdetr"}
        response = http.post(
            "/api/detect", json={**body, "confidence_threshold": 0.5, "prompts": prompts}
        )
        assert response.status_code == 200, response.text
        return [d["label"] for d in boxes_inside_frame(response.json()["frames"])]

    everything = labels(None)
    assert len(set(everything)) >= 2, "the test needs more than one label to filter"
    wanted = sorted(set(everything))[:1]
    assert labels(wanted) == [label for label in everything if label in wanted]
    # A user's wording: plural, article, case ("Cats" -> "cat") name the class too.
    spelled = {
        "person": "People",
        "bicycle": "Bicycles",
        "cat": "Cats",
        "car": "a Car",
        "dog": "Dogs",
    }
    if wanted[0] in spelled:
        assert labels([spelled[wanted[0]]]) == labels(wanted)


def test_rf_detr_bad_frame_is_a_422(http: httpx.Client) -> None:
    response = http.post(
        "/api/detect",
        json={"video_path": "walk.mp4", "frame_numbers": [999], "model": "rfdetr"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "frames_out_of_range"


def test_sam3_finds_a_concept_inside_the_frame(http: httpx.Client) -> None:
    response = http.post(
        "/api/detect",
        json={
            "video_path": "walk.mp4",
            "frame_numbers": [0],
            "model": "sam3",
            "prompts": ["person"],
            "confidence_threshold": 0.2,
        },
    )

    assert response.status_code == 200, response.text
    found = boxes_inside_frame(response.json()["frames"])
    assert found, "the tiny SAM 3 scores ~0.25: boxes at 0.2"
    assert {d["label"] for d in found} == {"person"}


def track(http: httpx.Client, model: str, prompts: list[Any]) -> httpx.Response:
    return http.post(
        "/api/track",
        json={
            "video_path": "walk.mp4",
            "frame_range": {"start": 0, "end": 5},
            "tracking_model": model,
            "prompts": prompts,
        },
    )


def test_edgetam_tracks_a_box_prompt(http: httpx.Client) -> None:
    response = track(http, "edgetam", [{"object_id": 1, "frame_number": 0, "box": BOX}])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "edgetam"
    assert [f["frame_number"] for f in body["frames"]] == list(range(6))
    first = body["frames"][0]["objects"]
    assert [o["object_id"] for o in first] == [1]
    assert set(first[0]["mask"]) >= {"size", "counts"}  # COCO RLE


def test_edgetam_box_outside_the_frame_is_a_422(http: httpx.Client) -> None:
    response = track(http, "edgetam", [{"object_id": 1, "box": [300, 10, 400, 50]}])

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


def test_sam3_tracker_tracks_a_concept_through_every_frame(http: httpx.Client) -> None:
    response = track(http, "sam3-video", ["person"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "sam3-video"
    assert body["detector"] is None  # SAM 3 finds the concept itself
    frames = body["frames"]
    assert [f["frame_number"] for f in frames] == list(range(6))
    ids = [[o["object_id"] for o in f["objects"]] for f in frames]
    assert ids[0], "the tiny SAM 3 video model finds instances of any concept"
    assert all(frame_ids == ids[0] for frame_ids in ids), "ids are stable across frames"
    for frame in frames:
        for obj in frame["objects"]:
            assert set(obj["mask"]) >= {"size", "counts"}
            assert obj["mask"]["size"] == [HEIGHT, WIDTH]


def test_sam3_tracker_mask_prompt_is_a_422(http: httpx.Client) -> None:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[10:60, 20:90] = True
    response = track(http, "sam3-video", [{"object_id": 1, "mask": encode_mask(mask)}])

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "text prompts" in error["message"] and "mask" in error["message"]
