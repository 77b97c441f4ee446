"""POST /api/track against a real server on 127.0.0.1: text prompt -> OpenCV's shipped face
cascade -> ByteTrack, as one JSON document and as an NDJSON stream; bad prompts get a 422."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.track_scenes import Faces
from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config
from zooserve.manager import ModelManager
from zooserve.media.rle import encode_mask

SCENE = Faces()
LAST = SCENE.frames - 1


@pytest.fixture(scope="module")
def track_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    media = tmp_path_factory.mktemp("track-http-media")
    SCENE.write(media / "faces.mp4")
    config = {
        "device": "cpu",
        "memory_budget_mb": 16,
        "media_root": str(media),
        "tasks": {
            "object_detection": {"selected": "face", "options": ["face"]},
            "video_tracking": {"selected": "face-bytetrack", "options": ["face-bytetrack"]},
        },
        "models": {
            "face": {
                "model_id": "opencv:haarcascade_frontalface_default.xml",
                "family": "opencv_cascade",
                "framework": "opencv",
                "options": {"label": "face", "batch_size": 2},
            },
            "face-bytetrack": {
                "model_id": "builtin:bytetrack",
                "family": "detection_tracker",
                "category": "tracking",
                "options": {"detector": "face"},
            },
        },
    }
    path = tmp_path_factory.mktemp("track-http-config") / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path)) as server:
        yield server


@pytest.fixture
def client(track_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=track_server.url, timeout=60) as http:
        yield http


def manager_of(server: BackgroundServer) -> ModelManager:
    manager: ModelManager = server.server.config.app.state.manager
    return manager


def request(**overrides: Any) -> dict[str, Any]:
    body = {
        "video_path": "faces.mp4",
        "frame_range": {"start": 0, "end": LAST},
        "prompts": ["face"],
        "confidence_threshold": 0.5,
    }
    return {**body, **overrides}


def test_track_returns_every_frame_with_stable_ids(
    client: httpx.Client, track_server: BackgroundServer
) -> None:
    response = client.post("/api/track", json=request())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["detector"], body["fps"]) == ("face-bytetrack", "face", 24.0)
    assert body["video"] == {"width": 320, "height": 128, "fps": 24.0, "frame_count": 12}
    assert body["processing_time"] > 0
    assert [f["frame_number"] for f in body["frames"]] == list(range(SCENE.frames))
    first, last = body["frames"][0]["objects"], body["frames"][-1]["objects"]
    assert [o["object_id"] for o in first] == [1, 2] == [o["object_id"] for o in last]
    for before, after in zip(first, last, strict=True):  # A moves right, B left, 2 px/frame
        moved = after["bbox"]["x1"] - before["bbox"]["x1"]
        assert abs(abs(moved) - 2 * LAST) <= 4
    assert set(first[0]) == {"object_id", "bbox", "mask", "score", "occluded"}
    assert first[0]["mask"] is None and 0 < first[0]["score"] <= 1
    assert manager_of(track_server).reservations == {}


@pytest.mark.parametrize(
    ("extra", "headers"),
    [({"stream": True}, {}), ({}, {"Accept": "application/x-ndjson"})],
    ids=["stream-flag", "accept-header"],
)
def test_ndjson_streams_a_line_per_frame_then_a_summary(
    client: httpx.Client, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    with client.stream(
        "POST",
        "/api/track",
        json=request(frame_range={"start": 2, "end": 7}, **extra),
        headers=headers,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *frames, summary = lines
    assert [f["type"] for f in frames] == ["frame"] * 6
    assert [f["frame_number"] for f in frames] == [2, 3, 4, 5, 6, 7]
    assert {o["object_id"] for f in frames for o in f["objects"]} == {1, 2}
    assert summary["type"] == "summary" and summary["frames"] == 6
    assert summary["model"] == "face-bytetrack" and summary["peak_session_bytes"] > 0


def test_a_client_that_leaves_mid_stream_gives_the_session_back(
    client: httpx.Client, track_server: BackgroundServer
) -> None:
    manager = manager_of(track_server)
    with client.stream("POST", "/api/track", json=request(stream=True)) as response:
        first = json.loads(next(response.iter_lines()))
        assert first["frame_number"] == 0
    deadline = time.monotonic() + 10
    while manager.reservations and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.reservations == {}


def test_box_and_mask_prompts_keep_the_callers_ids(client: httpx.Client) -> None:
    mask = np.zeros((SCENE.height, SCENE.width), bool)
    mask[16:42, 250:276] = True  # the mirrored astronaut's face at frame 0
    body = request(
        frame_range={"start": 0, "end": 5},
        prompts=[
            {"object_id": 11, "box": [44, 16, 70, 42]},
            {"object_id": 12, "mask": encode_mask(mask)},
        ],
    )
    response = client.post("/api/track", json=body)
    assert response.status_code == 200, response.text
    for frame in response.json()["frames"]:
        assert [o["object_id"] for o in frame["objects"]] == [11, 12]


BOX = {"object_id": 1, "box": [10, 10, 40, 40]}
BAD_PROMPTS = [
    ({"prompts": []}, "prompts must not be empty"),
    ({"prompts": [{**BOX, "box": [330, 10, 360, 40]}]}, "outside the 320x128 frame"),
    ({"prompts": [{"object_id": 1, "points": [[400, 5]]}]}, r"point \(400.0, 5.0\) is outside"),
    (
        {"prompts": [BOX, {"object_id": 4, "points": [[5, 5]], "point_labels": [0]}]},
        "unknown object id 4",
    ),
    ({"frame_range": {"start": 5, "end": 2}}, "frame_range is empty"),
    ({"frame_range": {"start": 0, "end": 99}}, r"frames \[99\] out of range"),
    ({"prompts": [{**BOX, "frame_number": 30}]}, "outside frame_range"),
    ({"prompts": [{**BOX, "mask": {"size": [128, 320], "counts": "zz"}}]}, "invalid character"),
    ({"prompts": [{"object_id": 1}]}, "give a box, points or a mask"),
    ({"prompts": ["face", BOX]}, "mix texts"),
    ({"tracking_model": "face"}, "not a tracker"),
    ({"frame_range": {"start": -1, "end": 3}}, "frame_range.start"),
    ({"prompts": [{**BOX, "colour": "red"}]}, "colour"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_PROMPTS)
def test_bad_requests_are_422_with_a_clear_message(
    client: httpx.Client,
    track_server: BackgroundServer,
    overrides: dict[str, Any],
    message: str,
) -> None:
    response = client.post("/api/track", json={**request(stream=True), **overrides})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"  # not a half-sent stream
    error = response.json()["error"]
    assert error["code"] in {"invalid_input", "frames_out_of_range", "invalid_request"}
    assert re.search(message, error["message"]), error["message"]
    assert manager_of(track_server).reservations == {}


def test_an_unknown_tracking_model_is_404(client: httpx.Client) -> None:
    response = client.post("/api/track", json=request(tracking_model="nope"))
    assert response.status_code == 404
    assert response.json()["error"]["details"]["available_models"] == ["face", "face-bytetrack"]
