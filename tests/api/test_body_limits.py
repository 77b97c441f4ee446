"""Body limits by kind, against real servers on 127.0.0.1: a JSON body is parsed whole in
memory, so it has a small limit of its own (`max_json_mb`), refused from its Content-Length
before a byte is read and while a chunked body streams in; uploads keep `max_request_mb` and
stream to disk; a multipart form's text parts and part counts are bounded too."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.api.test_uploads import face_only_config
from zooserve.api.request_guards import BodyLimits
from zooserve.api.server import BackgroundServer
from zooserve.api.uploads import MAX_FORM_FIELDS
from zooserve.catalog import load_config
from zooserve.runtimes.memory import MB


def answer_to_headers(
    server: BackgroundServer, target: str, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """Status and error of the server's answer to a POST whose headers are sent but not one
    byte of its body: only a refusal from the headers alone can answer it."""
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST", target=target, headers=[("Host", server.host), *headers.items()]
    )
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(connection.send(request) or b"")
        status, body = 0, b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, json.loads(body)["error"]


def test_a_50_mb_json_body_is_refused_from_its_content_length_before_it_is_sent(
    server: BackgroundServer,
) -> None:
    """Issue #21: 50 MB to /api/detect was read and parsed (+606 MB RSS) before its 422.
    Here not one byte of the body is sent: only a refusal from the headers can answer."""
    headers = {"Content-Type": "application/json", "Content-Length": str(50 * MB)}
    status, error = answer_to_headers(server, "/api/detect", headers)
    assert status == 413 and error["code"] == "payload_too_large"
    assert f"{50 * MB} bytes" in error["message"] and "max_json_mb" in error["message"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_an_upload_bigger_than_the_json_limit_still_works(
    client: httpx.Client, tmp_path: Path
) -> None:
    """Uploads keep max_request_mb (512): a 5.9 MB uncompressed PNG is detected, not a 413."""
    image = np.tile(skimage.data.astronaut(), (3, 3, 1))  # 1536x1536
    path = tmp_path / "big.png"
    Image.fromarray(image).save(path, compress_level=0)
    assert path.stat().st_size > 4 * MB  # over the JSON limit
    response = client.post(
        "/api/detect",
        files={"file": ("big.png", path.read_bytes(), "image/png")},
        data={"request": json.dumps({"model": "face"})},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["frames"][0]["detections"]


@pytest.fixture(scope="module")
def small_limits(
    media_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A server whose JSON limit is 50 KB (uploads: 512 MB)."""
    folder = tmp_path_factory.mktemp("small-limits")
    path = face_only_config(folder, media_root, max_json_mb=0.05)
    with (
        BackgroundServer(load_config(path)) as running,
        httpx.Client(base_url=running.url, timeout=60) as http,
    ):
        yield http


def test_a_chunked_json_body_is_refused_once_it_runs_over(small_limits: httpx.Client) -> None:
    chunks = iter([b'{"video_path": "', *[b"x" * 4096] * 20, b'"}'])  # no Content-Length
    response = small_limits.post(
        "/api/detect", content=chunks, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and "max_json_mb" in error["message"]


def test_a_json_body_under_the_limit_passes(small_limits: httpx.Client) -> None:
    body = {"video_path": "astronaut.png", "model": "face", "prompts": ["x" * 40_000]}
    assert small_limits.post("/api/detect", json=body).status_code == 200


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"request": json.dumps({"model": "face", "pad": "x" * 60_000})}, "exceeded maximum size"),
        ({f"extra{i}": "x" for i in range(MAX_FORM_FIELDS + 1)}, "Too many fields"),
    ],
)
def test_a_forms_text_parts_are_bounded(
    small_limits: httpx.Client, media_root: Path, data: dict[str, str], expected: str
) -> None:
    """Text parts are held in memory: the `request` part has the JSON limit, and a form has
    at most MAX_FORM_FIELDS of them (Starlette's default of 1,000 x 1 MB held 512 MB)."""
    image = ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")
    response = small_limits.post("/api/detect", files={"file": image}, data=data)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request" and expected in error["message"]


UPLOAD = "multipart/form-data"


@pytest.mark.parametrize(
    ("media", "accepted", "limit"),
    [
        (UPLOAD, {UPLOAD, "application/json"}, 512),  # an upload to an upload route
        ("application/json", {UPLOAD, "application/json"}, 4),
        ("application/vnd.zoo+json", {UPLOAD, "application/json"}, 4),
        (UPLOAD, {"application/json"}, 4),  # multipart where no upload is taken
        ("text/plain", None, 4),  # a route without a body (or none at all)
        ("", None, 4),
    ],
)
def test_only_uploads_get_the_upload_limit(
    media: str, accepted: set[str] | None, limit: int
) -> None:
    limits = BodyLimits(max_upload_bytes=512 * MB, max_json_bytes=4 * MB)
    assert limits.for_body(media, accepted).max_bytes == limit * MB


def test_the_json_limit_never_exceeds_the_upload_limit() -> None:
    limits = BodyLimits(max_upload_bytes=10_000, max_json_bytes=4 * MB)
    assert limits.for_body("application/json", None).max_bytes == 10_000
