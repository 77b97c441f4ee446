"""Strict parsing at the HTTP edge, against a real server on 127.0.0.1: JSON types taken as
they are, JSON only as JSON, bounded nesting, sane Content-Length, and one error envelope."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from zooserve.api.metrics import Metrics
from zooserve.api.middleware import ServiceMiddleware
from zooserve.api.request_guards import json_nesting_exceeds
from zooserve.api.routes_track import TrackRequest
from zooserve.api.server import BackgroundServer

DEEP = b"[" * 100_000


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and set(error) == {"code", "message", "details"}
    assert "Traceback" not in response.text
    return error


# --- 1. strict types ----------------------------------------------------------------------

VIDEO = {"video_path": "walk.mp4"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/detect", {**VIDEO, "frame_numbers": [True]}, "frame_numbers.0"),
        ("/api/detect", {**VIDEO, "frame_numbers": [1.0]}, "frame_numbers.0"),
        ("/api/detect", {**VIDEO, "frame_numbers": ["2"]}, "frame_numbers.0"),
        ("/api/detect", {**VIDEO, "confidence_threshold": "0.5"}, "confidence_threshold"),
        ("/api/annotate", {**VIDEO, "frame_numbers": [False]}, "frame_numbers.0"),
        ("/api/track", {**VIDEO, "frame_range": {"start": 0, "end": 1}, "stream": "yes"}, "stream"),
        ("/api/track", {**VIDEO, "frame_range": {"start": True, "end": 1}}, "frame_range.start"),
        ("/api/enrich", {**VIDEO, "include_embeddings": "true"}, "include_embeddings"),
        ("/api/enrich", {**VIDEO, "sampling": {"count": "8"}}, "sampling.count"),
        ("/api/summarize", {**VIDEO, "persona_context": "x", "frame_count": True}, "frame_count"),
        ("/api/jobs", {"task": "detect", "body": {**VIDEO, "frame_numbers": [True]}}, "frame"),
    ],
)
def test_json_types_are_taken_as_they_are(
    client: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    code = "invalid_input" if path == "/api/jobs" else "invalid_request"  # the job's own body
    error = assert_error(client.post(path, json=body), 422, code)
    assert field in error["message"] or field in json.dumps(error["details"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/enrich",
            b'{"video_path": "walk.mp4", "detections": [{"frame_number": 0, '
            b'"label": "a", "bbox": {"x1": 0, "y1": 0, "x2": 1e300, "y2": 1}}]}',
        ),
        (
            "/api/enrich",
            b'{"video_path": "walk.mp4", "detections": [{"frame_number": 0, '
            b'"label": "a", "bbox": {"x1": NaN, "y1": 0, "x2": 1, "y2": 1}}]}',
        ),
        (
            "/api/track",
            b'{"video_path": "walk.mp4", "frame_range": {"start": 0, "end": 0}, '
            b'"prompts": [{"object_id": 1, "box": [0, 0, Infinity, 5]}]}',
        ),
    ],
)
def test_coordinates_are_finite_and_bounded(client: httpx.Client, path: str, body: bytes) -> None:
    """float32 boxes: 1e300 became inf there, and the enrich route answered 500."""
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request")


def test_the_multipart_request_field_is_strict_too(client: httpx.Client) -> None:
    response = client.post(
        "/api/detect",
        files={"file": ("a.png", b"not read", "image/png")},
        data={"request": json.dumps({"frame_numbers": [True]})},
    )
    assert "frame_numbers.0" in assert_error(response, 422, "invalid_request")["message"]


def test_an_int_is_still_a_float_and_pairs_are_json_arrays(client: httpx.Client) -> None:
    body = {"video_path": "astronaut.png", "model": "face", "confidence_threshold": 1}
    assert client.post("/api/detect", json=body).status_code == 200
    # Jobs and uploads validate an already-parsed dict: a point must not need a tuple there.
    prompt = {"object_id": 0, "points": [[1, 2.5]], "point_labels": [1]}
    parsed = TrackRequest.model_validate(
        {**VIDEO, "frame_range": {"start": 0, "end": 0}, "prompts": [prompt]}
    )
    assert parsed.prompts[0].points == [[1.0, 2.5]]  # type: ignore[union-attr]


# --- 2. JSON only as JSON -------------------------------------------------------------------

JSON_BODY = json.dumps({"video_path": "astronaut.png", "model": "face"}).encode()


OTHER_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        (path, content_type)
        for path in ["/api/detect", "/api/jobs", "/models/load", "/api/augment"]
        for content_type in OTHER_TYPES
        # an upload route takes multipart (tested in test_uploads.py)
        if not (path == "/api/detect" and content_type == "multipart/form-data")
    ],
)
def test_a_json_route_refuses_other_media_types(
    client: httpx.Client, path: str, content_type: str | None
) -> None:
    request = client.build_request("POST", path, content=JSON_BODY)
    request.headers.pop("content-type", None)
    if content_type is not None:
        request.headers["content-type"] = content_type
    error = assert_error(client.send(request), 415, "unsupported_media_type")
    assert "application/json" in error["message"]


def test_json_media_types_and_multipart_uploads_still_work(client: httpx.Client) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.zoo+json"):
        response = client.post(
            "/api/detect", content=JSON_BODY, headers={"content-type": content_type}
        )
        assert response.status_code == 200, response.text
    response = client.post(
        "/api/detect",
        files={"file": ("a.png", b"not an image", "image/png")},
        data={"request": "{}"},
    )
    assert response.status_code not in (415, 500), response.text


# --- 3. bounded nesting ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/detect", "/api/jobs", "/models/load", "/api/track"])
def test_deep_nesting_is_a_422_not_a_recursion_error(client: httpx.Client, path: str) -> None:
    response = client.post(path, content=DEEP, headers={"content-type": "application/json"})
    assert "deeper than 32" in assert_error(response, 422, "invalid_request")["message"]
    assert client.get("/health").status_code == 200


def test_a_body_over_a_megabyte_is_scanned_too(client: httpx.Client) -> None:
    body = b'{"task": "detect", "body": {"video_path": "' + b"x" * 2_000_000 + b'", "a": ' + DEEP
    response = client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert "deeper than 32" in assert_error(response, 422, "invalid_request")["message"]


def test_deep_nesting_in_the_multipart_request_field_is_a_422(client: httpx.Client) -> None:
    response = client.post(
        "/api/detect",
        files={"file": ("a.png", b"x", "image/png")},
        data={"request": DEEP.decode()},
    )
    assert_error(response, 422, "invalid_request")


def test_brackets_inside_strings_do_not_count(client: httpx.Client) -> None:
    body = {"video_path": "[{" * 1000 + "x.mp4"}
    response = client.post("/api/detect", json=body)
    assert response.status_code != 500 and "deeper" not in response.text


@pytest.mark.parametrize(
    ("text", "limit", "exceeds"),
    [
        (b"[" * 32 + b"]" * 32, 32, False),
        (b"[" * 33 + b"]" * 33, 32, True),
        (b'{"a": ' * 33 + b"1" + b"}" * 33, 32, True),
        (b"[" * 10 + b"]" * 10 + b"[" * 10 + b"]" * 10, 12, False),  # siblings, not nesting
        (b'["[[[[", "\\"[[[[", [[]]]', 3, False),  # brackets in (escaped) strings
        (b'["\\\\", [[[]]]]', 3, True),  # an escaped backslash closes nothing
        (b'"[[[[[[' + b"[" * 100, 3, False),  # an unterminated string runs to the end
        (b"[" * 3_000_000, 32, True),
    ],
)
def test_nesting_is_counted_outside_strings(text: bytes, limit: int, exceeds: bool) -> None:
    assert json_nesting_exceeds(text, limit) is exceeds


# --- 4. Content-Length ----------------------------------------------------------------------


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "٣"])
def test_a_malformed_content_length_is_a_400_on_the_wire(
    server: BackgroundServer, length: str
) -> None:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /models/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\n\r\n{{}}".encode()
        )
        status_line = sock.recv(65536).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", status_line


@pytest.mark.parametrize("length", [b"abc", b"-5", b" ", b"1.5"])
def test_the_middleware_itself_answers_a_malformed_content_length(length: bytes) -> None:
    """The HTTP parser in front usually refuses these; behind another one (a proxy, httptools)
    the middleware must not turn them into a 500."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("must not be reached")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = ServiceMiddleware(app, api_key=None, max_body_bytes=1000, metrics=Metrics())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/models/load",
        "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
    }
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "bad_request"


# --- 5. one envelope ------------------------------------------------------------------------


def test_every_error_is_a_bounded_envelope(client: httpx.Client) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")
    response = client.delete("/health")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    many = client.post("/api/annotate", json={**VIDEO, "frame_numbers": [True] * 50_000})
    error = assert_error(many, 422, "invalid_request")
    assert len(error["details"]["errors"]) <= 20 and len(many.content) < 10_000
    job = {"task": "detect", "body": {**VIDEO, "frame_numbers": [True] * 50_000}}
    many = client.post("/api/jobs", json=job)
    error = assert_error(many, 422, "invalid_input")
    assert len(error["details"]["errors"]) <= 20 and len(many.content) < 10_000
    unknown = client.post("/api/jobs", json={"task": "t" * 100_000, "body": {}})
    assert len(assert_error(unknown, 422, "invalid_input")["message"]) < 500
    long_name = client.post("/models/load", json={"model_id": "m" * 100_000})
    assert_error(long_name, 422, "invalid_request")
    assert len(long_name.content) < 10_000


def test_the_openapi_document_describes_the_envelope(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for operations in document["paths"].values():
        for operation in operations.values():
            ref = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert ref == {"$ref": "#/components/schemas/ErrorResponse"}
