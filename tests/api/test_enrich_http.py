"""POST /api/enrich on a real server (uvicorn on 127.0.0.1) over zoo triggers with real models:
OpenCV's shipped face cascade, and tiny random OWLv2 / ViT / CLIP through the real loaders."""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import VIDEO_FRAMES, TinyModels
from tests.tiny.vit_classifier import WEATHER
from zooserve.api.server import BackgroundServer
from zooserve.catalog import Config

ASTRONAUT = {"frame_number": 0, "label": "person", "confidence": 0.9}
ASTRONAUT_BOX = {"x1": 130, "y1": 0, "x2": 470, "y2": 512}


@pytest.fixture(scope="module")
def enrich_server(
    tmp_path_factory: pytest.TempPathFactory, media_root: Path, tiny_models: TinyModels
) -> Iterator[BackgroundServer]:
    broken = tmp_path_factory.mktemp("enrich") / "broken-owl"
    shutil.copytree(tiny_models.path("owlv2"), broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 100,
            "media_root": str(media_root),
            "admission_timeout_s": 1,
            "default_prompts": ["person", "cat"],
            "tasks": {"object_detection": {"selected": "owl", "options": ["owl"]}},
            "models": {
                "owl": {"model_id": str(tiny_models.path("owlv2")), "family": "owlv2"},
                "face": {
                    "model_id": "opencv:haarcascade_frontalface_default.xml",
                    "family": "opencv_cascade",
                    "framework": "opencv",
                    "options": {"label": "face"},
                },
                "age": {
                    "model_id": str(tiny_models.path("vit_classifier")),
                    "family": "vit_classifier",
                },
                "clip": {"model_id": str(tiny_models.path("clip")), "family": "clip"},
                "broken": {"model_id": str(broken), "family": "owlv2"},
            },
            "zoo": {
                "triggers": [
                    {
                        "name": "faces",
                        "model": "face",
                        "when": {"classes": ["person"]},
                        "max_detections": 1,
                    },
                    {"name": "age", "model": "age", "source": "faces"},
                    {"name": "reid", "model": "clip", "when": {"classes": ["person"]}},
                    {"name": "weather", "model": "age", "scope": "batch"},
                    {"name": "plates", "model": "broken", "when": {"classes": ["car"]}},
                    {"name": "plate_text", "model": "age", "source": "plates"},
                ]
            },
        }
    )
    gc.collect()
    gc.freeze()  # unloads gc.collect() the heap: scan only this module's objects (~1.5 s each)
    try:
        with BackgroundServer(config) as running:
            yield running
    finally:
        gc.unfreeze()


@pytest.fixture
def http(enrich_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=enrich_server.url, timeout=120) as client:
        yield client


def post(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/api/enrich", json=body)


def test_given_detections_are_enriched_through_a_chain(http: httpx.Client) -> None:
    response = post(
        http,
        video_path="astronaut.png",
        detections=[{**ASTRONAUT, "bbox": ASTRONAUT_BOX}],
        triggers=["age", "reid", "weather"],  # `faces` comes with `age`, its source
        include_embeddings=True,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == [] and body["detector"] is None
    assert [(load["model"], load["stages"]) for load in body["loads"]] == [
        ("face", ["faces"]),
        ("age", ["age", "weather"]),  # one lease serves both triggers of the model
        ("clip", ["reid"]),
    ]
    (frame,) = body["frames"]
    assert (frame["frame_number"], frame["width"], frame["height"]) == (0, 512, 512)
    (person,) = frame["detections"]
    assert person["bbox"] == {"x1": 130.0, "y1": 0.0, "x2": 470.0, "y2": 512.0}
    (face,) = person["enrichments"]["faces"]
    assert face["label"] == "face" and face["source"] == "faces"
    assert 170 < face["bbox"]["x1"] < face["bbox"]["x2"] < 280
    assert face["enrichments"]["age"]["label"] in WEATHER
    reid = person["enrichments"]["reid"]
    assert len(reid["vector"]) == reid["dim"]
    assert np.linalg.norm(reid["vector"]) == pytest.approx(1.0, abs=1e-3)
    assert frame["enrichments"]["weather"]["label"] in WEATHER
    assert body["batch"]["weather"]["frames"] == 1
    assert {s["name"]: s["status"] for s in body["stages"]} == {
        "faces": "ok",
        "age": "ok",
        "reid": "ok",
        "weather": "ok",
    }


def test_the_detector_finds_the_primary_detections_when_none_are_given(
    http: httpx.Client,
) -> None:
    response = post(
        http,
        video_path="walk.mp4",
        sampling={"strategy": "uniform", "count": 3},
        confidence_threshold=0.0,
        triggers=["reid"],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["detector"] == "owl" and body["errors"] == []
    assert [f["frame_number"] for f in body["frames"]] == [0, 15, VIDEO_FRAMES - 1]
    assert body["loads"][0]["model"] == "owl" and body["loads"][0]["stages"] == ["detect"]
    persons = [d for f in body["frames"] for d in f["detections"] if d["label"] == "person"]
    assert persons and all("vector" not in d["enrichments"]["reid"] for d in persons)
    cats = [d for f in body["frames"] for d in f["detections"] if d["label"] == "cat"]
    assert all("reid" not in d["enrichments"] for d in cats)
    assert {s["name"]: s["inputs"] for s in body["stages"]} == {"reid": len(persons)}


def test_a_failing_model_is_reported_and_its_dependants_skipped(http: httpx.Client) -> None:
    car = {"frame_number": 3, "label": "car", "bbox": {"x1": 10, "y1": 10, "x2": 90, "y2": 60}}
    response = post(http, video_path="walk.mp4", detections=[car], triggers=["plate_text"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(e["stage"], e["model"], e["code"]) for e in body["errors"]] == [
        ("plates", "broken", "model_load_failed"),
        ("plate_text", "age", "dependency_failed"),
    ]
    assert [f["frame_number"] for f in body["frames"]] == [3]
    assert body["frames"][0]["detections"][0]["enrichments"] == {}
    assert [s["status"] for s in body["stages"]] == ["failed", "skipped"]


def test_a_failing_primary_detector_skips_only_what_needs_detections(
    http: httpx.Client,
) -> None:
    response = post(http, video_path="walk.mp4", model="broken", triggers=["reid", "weather"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(e["stage"], e["model"], e["code"]) for e in body["errors"]] == [
        ("detect", "broken", "model_load_failed"),
        ("reid", "clip", "dependency_failed"),
    ]
    assert body["loads"][0] == {**body["loads"][0], "model": "broken", "failed": True}
    assert body["frames"][0]["detections"] == []
    assert body["frames"][0]["enrichments"]["weather"]["label"] in WEATHER  # needs no detections


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ({"frame_numbers": [0], "sampling": {"count": 2}}, "invalid_request", "not both"),
        (
            {"detections": [{**ASTRONAUT, "bbox": {**ASTRONAUT_BOX, "x2": 100}}]},
            "invalid_request",
            "x2 > x1",
        ),
        ({"triggers": ["ages"]}, "invalid_input", "unknown triggers ['ages']"),
        ({"frame_numbers": [5]}, "frames_out_of_range", "frames [5] out of range"),
        (
            {
                "frame_numbers": [0],
                "detections": [{**ASTRONAUT, "frame_number": 2, "bbox": ASTRONAUT_BOX}],
            },
            "invalid_input",
            "detections given for frames [2]",
        ),
        (
            {"detections": [{**ASTRONAUT, "bbox": {"x1": 600, "y1": 0, "x2": 700, "y2": 9}}]},
            "invalid_input",
            "outside the 512x512 frame",
        ),
        ({"order": "random"}, "invalid_request", "order"),
        ({"colour": "red"}, "invalid_request", "colour"),
    ],
)
def test_bad_requests_are_422(
    http: httpx.Client, body: dict[str, Any], code: str, where: str
) -> None:
    response = post(http, video_path="astronaut.png", **body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and where in error["message"]
