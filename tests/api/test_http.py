"""The HTTP contract against a real server on 127.0.0.1 (tests share one server, in order)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import VIDEO_FRAMES
from zooserve.api.server import BackgroundServer


def unload_all(client: httpx.Client) -> None:
    for name in client.get("/models/info").json()["loaded_models"]:
        assert client.post("/models/unload", json={"model_id": name}).status_code == 200


def test_health_shape(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "healthy" and body["device"] == "cpu"
    assert body["memory_budget_mb"] == pytest.approx(0.9)
    assert set(body) >= {
        "models_loaded",
        "gpu_memory_allocated",
        "gpu_memory_reserved",
        "memory_used_mb",
    }


def test_models_info_reports_availability_and_how_to_fetch(client: httpx.Client) -> None:
    body = client.get("/models/info").json()
    assert body["available_models"] == {"object_detection": ["owl", "gdino", "hub-owl"]}
    owl, hub = body["models"]["owl"], body["models"]["hub-owl"]
    assert (owl["available"] is True and owl["family"] is None) or owl["family"] == "owlv2"
    assert hub["available"] is False and hub["fetch_with"] == "zooserve models pull hub-owl"
    assert {
        "status",
        "category",
        "vram_mb_estimate",
        "memory_mb_measured",
        "load_count",
        "last_load_seconds",
        "available",
    } <= set(owl)


def test_detect_on_video_frames(client: httpx.Client) -> None:
    response = client.post(
        "/api/detect",
        json={
            "video_path": "walk.mp4",
            "frame_numbers": [29, 3, 3],
            "confidence_threshold": 0.0,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "owl" and body["prompts"] == ["a person", "a cat"]
    assert [f["frame_number"] for f in body["frames"]] == [29, 3, 3]
    assert body["frames"][0]["timestamp"] == pytest.approx(29 / 24)
    assert body["video"] == {"width": 192, "height": 128, "fps": 24.0, "frame_count": VIDEO_FRAMES}
    detections = body["frames"][0]["detections"]
    assert detections and {d["label"] for d in detections} <= {"a person", "a cat"}
    box = detections[0]["bbox"]
    assert 0 <= box["x1"] <= box["x2"] <= 192 and 0 <= box["y1"] <= box["y2"] <= 128
    assert body["frames"][1] == body["frames"][2]  # the same frame twice gives the same answer


def test_detect_on_an_image_with_a_shipped_opencv_model(client: httpx.Client) -> None:
    body = client.post(
        "/api/detect",
        json={
            "video_path": "astronaut.png",
            "model": "face",
            "confidence_threshold": 0.5,
        },
    ).json()
    faces = body["frames"][0]["detections"]
    assert len(faces) == 1 and faces[0]["label"] == "face"
    box = faces[0]["bbox"]  # the astronaut's face is around x 180-270, y 60-160
    assert 150 < (box["x1"] + box["x2"]) / 2 < 300 and 50 < (box["y1"] + box["y2"]) / 2 < 170


def test_sixteen_concurrent_requests_on_a_cold_model_cause_one_load(
    client: httpx.Client, server: BackgroundServer
) -> None:
    unload_all(client)
    before = client.get("/models/info").json()["models"]["gdino"]["load_count"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            body = {
                "video_path": "walk.mp4",
                "frame_numbers": [5],
                "model": "gdino",
                "prompts": ["a person"],
                "confidence_threshold": 0.0,
            }
            return await asyncio.gather(*(http.post("/api/detect", json=body) for _ in range(20)))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.text.split('"processing_time"')[0] for r in responses}) == 1  # same detections
    info = client.get("/models/info?events=1000").json()
    assert info["models"]["gdino"]["load_count"] == before + 1


def test_budget_for_one_model_evicts_the_other(client: httpx.Client) -> None:
    unload_all(client)
    assert client.post("/models/load", json={"model_id": "owl"}).json()["status"] == "loaded"
    assert client.post("/models/load", json={"model_id": "gdino"}).json()["status"] == "loaded"
    info = client.get("/models/info").json()
    assert info["loaded_models"] == ["gdino"]
    evictions = [e for e in info["events"] if e["kind"] == "evict"]
    assert evictions[-1]["model"] == "owl" and evictions[-1]["reason"] == "make room for gdino"
    assert info["memory_used_mb"] <= info["memory_budget_mb"]


def test_unload_recovers_memory_and_reports_unloaded(client: httpx.Client) -> None:
    client.post("/models/load", json={"model_id": "owl"})
    measured = client.get("/models/info").json()["models"]["owl"]["memory_mb_measured"]
    result = client.post("/models/unload", json={"model_id": "owl"}).json()
    assert result["status"] == "unloaded" and result["verified"] is True
    assert result["recovered_bytes"] / 2**20 == pytest.approx(measured)
    info = client.get("/models/info").json()
    assert info["models"]["owl"]["status"] == "unloaded" and "owl" not in info["loaded_models"]


def test_corrupt_weights_give_a_clear_error_and_leave_nothing_behind(client: httpx.Client) -> None:
    for _ in range(2):  # the second try fails the same way: no stuck state
        response = client.post("/models/load", json={"model_id": "broken"})
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "model_load_failed" and "broken" in error["message"]
        assert "Traceback" not in response.text
    info = client.get("/models/info").json()
    assert info["models"]["broken"]["status"] == "unloaded"
    assert info["models"]["broken"]["last_error"]
    assert "broken" not in info["loaded_models"]


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"video_path": "../../etc/passwd"}, 403, "path_forbidden", "outside media_root"),
        ({"video_path": "/etc/passwd"}, 403, "path_forbidden", "outside media_root"),
        ({"video_path": "missing.mp4"}, 404, "media_not_found", "missing.mp4"),
        ({"video_path": "walk.mp4", "model": "nope"}, 404, "model_not_found", "nope"),
        ({"video_path": "walk.mp4", "model": "hub-owl"}, 404, "model_unavailable", "not present"),
        (
            {"video_path": "walk.mp4", "frame_numbers": [1, 30, 99]},
            422,
            "frames_out_of_range",
            "30",
        ),
        ({"video_path": "walk.mp4", "frame_numbers": []}, 422, "invalid_request", "frame_numbers"),
        (
            {"video_path": "walk.mp4", "confidence_threshold": 2},
            422,
            "invalid_request",
            "confidence",
        ),
        ({"video_path": "walk.mp4", "prompts": ["  "]}, 422, "invalid_input", "prompts"),
        ({"video_path": "walk.mp4", "colour": "red"}, 422, "invalid_request", "colour"),
        ({"frame_numbers": [0]}, 422, "invalid_request", "video_path"),
        ({"video_path": "notes.mp4"}, 422, "not_a_video", "notes.mp4"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: httpx.Client, body: dict, status: int, code: str, needle: str
) -> None:
    response = client.post("/api/detect", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert needle in error["message"] or needle in str(error["details"])


def test_unknown_model_lists_available_ones_and_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post("/models/load", json={"model_id": "nope"})
    assert response.status_code == 404
    assert "owl" in response.json()["error"]["details"]["available_models"]
    response = client.post(
        "/api/detect", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert client.get("/no/such/route").status_code == 404


def test_detect_accepts_an_upload_and_cleans_it_up(client: httpx.Client, media_root) -> None:
    image = (media_root / "astronaut.png").read_bytes()
    response = client.post(
        "/api/detect",
        files={"file": ("../../evil name.png", image, "image/png")},
        data={"request": '{"model": "face", "confidence_threshold": 0.5}'},
    )
    assert response.status_code == 200, response.text
    assert [d["label"] for d in response.json()["frames"][0]["detections"]] == ["face"]
    assert not any((media_root / ".uploads").iterdir())  # removed after the request
    response = client.post("/api/detect", files={"file": ("x.mp4", b"not a video")})
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_a_video"
    response = client.post("/api/detect", data={"request": "{}"}, files={"other": ("a", b"")})
    assert response.status_code == 400
