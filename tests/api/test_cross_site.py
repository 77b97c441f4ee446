"""Cross-site browser requests, against a real server on 127.0.0.1 with no API key (the
default): a page on another site must not make a visitor's browser upload a file and run
inference (multipart is a "simple" request: no preflight). Same-origin pages, configured CORS
origins and clients that are not browsers are unaffected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_body_limits import answer_to_headers
from tests.api.test_uploads import face_only_config
from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

EVIL = "https://evil.example"
ALLOWED = "http://annotator.example"


@pytest.fixture(scope="module")
def server(
    media_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer]:
    folder = tmp_path_factory.mktemp("cross-site")
    path = face_only_config(folder, media_root, cors_origins=[ALLOWED])
    with BackgroundServer(load_config(path)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def face_runs(client: httpx.Client) -> int:
    """Detect requests the face model answered: what a refused upload must not add to."""
    series = 'zooserve_requests_total{method="POST",model="face",route="/api/detect",status="200"}'
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return int(float(line.split()[-1]))
    return 0


def upload(client: httpx.Client, media_root: Path, headers: dict[str, str]) -> httpx.Response:
    return client.post(
        "/api/detect",
        files={"file": ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")},
        data={"request": json.dumps({"model": "face"})},
        headers=headers,
    )


def assert_cross_site(response: httpx.Response, what: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "cross_site_request" and what in error["message"]
    assert "cors_origins" in error["message"]


@pytest.mark.parametrize(
    ("headers", "what"),
    [
        ({"Origin": EVIL}, "Origin https://evil.example"),
        ({"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, "Origin"),
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),  # a sibling subdomain
        ({"Origin": "null"}, "Origin null"),  # sandboxed frames, file: pages
        ({"Origin": "http://127.0.0.1.evil.example"}, "Origin"),
    ],
)
def test_a_cross_site_upload_is_refused_and_not_run(
    client: httpx.Client, media_root: Path, headers: dict[str, str], what: str
) -> None:
    before = face_runs(client)
    assert_cross_site(upload(client, media_root, headers), what)
    assert face_runs(client) == before


def test_the_upload_is_refused_before_its_body_is_sent(server: BackgroundServer) -> None:
    """From the headers alone: the file never reaches the server, let alone a model."""
    headers = {
        "Origin": EVIL,
        "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": "10000000",
    }
    status, error = answer_to_headers(server, "/api/detect", headers)
    assert status == 403 and error["code"] == "cross_site_request"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/models/load", {"model_id": "face"}),
        ("POST", "/models/unload", {"model_id": "face"}),
        ("POST", "/api/jobs", {"task": "detect", "body": {"video_path": "astronaut.png"}}),
        ("DELETE", "/api/jobs/0123", None),
    ],
)
def test_every_state_changing_route_refuses_cross_site_browsers(
    client: httpx.Client, method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body, headers={"Origin": EVIL})
    assert_cross_site(response, "Origin")


def test_same_origin_cors_origins_and_plain_clients_still_post(
    client: httpx.Client, server: BackgroundServer, media_root: Path
) -> None:
    before = face_runs(client)
    allowed = [
        {},  # curl, scripts, the CLI: no Origin, no Sec-Fetch-Site
        {"Origin": server.url},  # the dashboard's own page
        {"Origin": server.url, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
        {"Origin": ALLOWED, "Sec-Fetch-Site": "cross-site"},  # listed in cors_origins
        {"Origin": ALLOWED.upper() + "/"},
    ]
    for headers in allowed:
        response = upload(client, media_root, headers)
        assert response.status_code == 200, (headers, response.text)
    assert face_runs(client) == before + len(allowed)


def test_reads_are_not_affected(client: httpx.Client) -> None:
    for path in ("/models/info", "/health", "/ui", "/openapi.json"):
        response = client.get(path, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 200, path
