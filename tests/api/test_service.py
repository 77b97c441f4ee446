"""What every route gets from the service layer: API key, request ids, body limit, CORS,
Prometheus metrics. A second real server, with an API key, over the shipped OpenCV models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def secured(media_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = {
        "device": "cpu",
        "media_root": str(media_root),
        "max_request_mb": 0.01,  # 10 KB: enough for JSON, not for an upload
        "cors_origins": ["http://annotator.example"],
        "models": {
            "face": {
                "model_id": "opencv:haarcascade_frontalface_default.xml",
                "family": "opencv_cascade",
                "framework": "opencv",
                "options": {"label": "face"},
            },
        },
    }
    path = tmp_path_factory.mktemp("secured") / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path), api_key=KEY) as server:
        yield server.url


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/models/info"),
        ("POST", "/models/load"),
        ("POST", "/models/unload"),
        ("POST", "/api/detect"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ],
)
def test_every_route_but_health_needs_the_key(secured: str, method: str, path: str) -> None:
    for headers in ({}, auth("wrong")):
        response = httpx.request(method, secured + path, headers=headers, json={})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"
    response = httpx.request(method, secured + path, headers=auth(), json={"model_id": "face"})
    assert response.status_code != 401
    assert httpx.get(secured + "/health").status_code == 200


def test_x_api_key_header_also_works_and_request_ids_are_echoed(secured: str) -> None:
    response = httpx.get(
        secured + "/models/info", headers={"X-API-Key": KEY, "X-Request-Id": "trace-42"}
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == "trace-42"
    assert len(httpx.get(secured + "/health").headers["x-request-id"]) == 16


def test_oversized_body_is_413(secured: str) -> None:
    body = {"video_path": "walk.mp4", "prompts": ["x" * 20_000]}
    response = httpx.post(secured + "/api/detect", json=body, headers=auth())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_cors_allows_only_configured_origins(secured: str) -> None:
    preflight = {"Origin": "http://annotator.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(secured + "/api/detect", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "http://annotator.example"
    other = httpx.options(secured + "/api/detect", headers={**preflight, "Origin": "http://evil"})
    assert "access-control-allow-origin" not in other.headers


def test_metrics_follow_loads_requests_and_memory(secured: str) -> None:
    def scrape() -> str:
        return httpx.get(secured + "/metrics", headers=auth()).text

    def value(text: str, series: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(series + " ")]
        return float(lines[0].split()[-1]) if lines else 0.0

    loads = 'zooserve_model_load_seconds_count{model="face"}'
    detects = 'zooserve_requests_total{method="POST",model="face",route="/api/detect",status="200"}'
    before = scrape()
    assert 'zooserve_model_memory_bytes{model="face"}' not in before
    httpx.post(
        secured + "/api/detect",
        headers=auth(),
        json={"video_path": "astronaut.png", "model": "face"},
    ).raise_for_status()
    after = scrape()
    assert value(after, loads) == value(before, loads) + 1
    assert 'zooserve_model_memory_bytes{model="face"}' in after
    assert "zooserve_models_loaded 1.0" in after
    assert value(after, detects) == value(before, detects) + 1
    httpx.post(secured + "/models/unload", headers=auth(), json={"model_id": "face"})
    assert "zooserve_models_loaded 0.0" in scrape()
