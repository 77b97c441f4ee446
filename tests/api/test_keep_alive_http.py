"""A request's `keep_alive` (Ollama's meaning) over HTTP, on a real server of its own (the
tests pin and unload models): every task body and upload form takes it, a bad one is a 422
naming the field, it reaches the pipeline of the route, the upload and the async job, and the
manager honours it (0 unloads once the request ends, -1 pins)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zooserve.api import routes_detect, routes_enrich, routes_generate, routes_track
from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config
from zooserve.core import request_context
from zooserve.core.errors import InvalidInput

DETECT = {"video_path": "walk.mp4", "frame_numbers": [0], "model": "owl"}
#: One valid body per task route, without keep_alive.
BODIES: dict[str, dict[str, Any]] = {
    "/api/detect": DETECT,
    "/api/annotate": DETECT,
    "/api/enrich": {"video_path": "walk.mp4", "frame_numbers": [0]},
    "/api/track": {"video_path": "walk.mp4", "frame_range": {"start": 0, "end": 1}},
    "/api/summarize": {"video_path": "walk.mp4", "persona_context": "a guard"},
    "/api/augment": {"persona_name": "guard"},
}
#: route -> (module, name) of the pipeline function it calls.
PIPELINES = {
    "/api/detect": (routes_detect, "detect"),
    "/api/annotate": (routes_detect, "detect"),
    "/api/enrich": (routes_enrich, "enrich"),
    "/api/track": (routes_track, "track"),
    "/api/summarize": (routes_generate, "summarize"),
    "/api/augment": (routes_generate, "augment"),
}


@pytest.fixture(scope="module")
def served(zoo_config: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(load_config(zoo_config)) as running:
        yield running


@pytest.fixture
def http(served: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=120) as client:
        yield client


def model_info(http: httpx.Client, name: str) -> dict[str, Any]:
    info: dict[str, Any] = http.get("/models/info").json()["models"][name]
    return info


def wait_for_status(http: httpx.Client, name: str, status: str) -> dict[str, Any]:
    """The model's info once it has `status` (an unload at the end of a lease may finish just
    after the answer was sent); its last info if it never does."""
    deadline = time.monotonic() + 10
    while True:
        info = model_info(http, name)
        if info["status"] == status or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def wait_for_job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# --- the manager honours it ------------------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [0, "0s"])
def test_keep_alive_zero_unloads_the_model_once_the_request_ends(
    http: httpx.Client, keep_alive: int | str
) -> None:
    loaded = http.post("/models/load", json={"model_id": "owl"})
    assert loaded.status_code == 200, loaded.text
    assert model_info(http, "owl")["status"] == "loaded"  # kept by the configured 5m
    response = http.post("/api/detect", json={**DETECT, "keep_alive": keep_alive})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "owl"
    assert wait_for_status(http, "owl", "unloaded")["status"] == "unloaded"


def test_keep_alive_zero_of_an_async_job_unloads_the_model_after_the_job(
    http: httpx.Client,
) -> None:
    http.post("/models/load", json={"model_id": "owl"})
    submitted = http.post("/api/jobs", json={"task": "detect", "body": {**DETECT, "keep_alive": 0}})
    assert submitted.status_code == 202, submitted.text
    job = wait_for_job(http, submitted.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert wait_for_status(http, "owl", "unloaded")["status"] == "unloaded"


def test_load_with_negative_keep_alive_pins_the_model(http: httpx.Client) -> None:
    try:
        response = http.post("/models/load", json={"model_id": "owl", "keep_alive": -1})
        assert response.status_code == 200, response.text
        info = model_info(http, "owl")
        assert info["status"] == "loaded"
        assert info["pinned"] is True, info
    finally:  # the next tests start from a model the budget may evict
        http.post("/models/unload", json={"model_id": "owl"})


# --- a bad value -------------------------------------------------------------------------------


def _bad_requests() -> list[tuple[str, dict[str, Any]]]:
    cases = [(path, {**body, "keep_alive": "soon"}) for path, body in BODIES.items()]
    cases.append(("/models/load", {"model_id": "owl", "keep_alive": "soon"}))
    cases.append(("/api/jobs", {"task": "detect", "body": {**DETECT, "keep_alive": "soon"}}))
    return cases


@pytest.mark.parametrize(("path", "body"), _bad_requests(), ids=lambda v: str(v)[:30])
def test_a_bad_keep_alive_is_a_422_naming_the_field(
    http: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in ("invalid_request", "invalid_input")
    assert "keep_alive" in error["message"] or "keep_alive" in json.dumps(error["details"])
    assert error["details"]["errors"][0]["location"].endswith("keep_alive")


@pytest.mark.parametrize("value", ["soon", True, "5 minutes", "1e3", "", [1], {"s": 1}])
def test_only_seconds_or_durations_are_a_keep_alive(http: httpx.Client, value: Any) -> None:
    response = http.post("/api/detect", json={**DETECT, "keep_alive": value})
    assert response.status_code == 422, response.text
    assert "keep_alive" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "form",
    [{"keep_alive": "soon"}, {"request": json.dumps({"keep_alive": "soon"})}],
    ids=["part", "inside-request"],
)
def test_a_bad_keep_alive_in_an_upload_form_is_a_422(
    http: httpx.Client, media_root: Path, form: dict[str, str]
) -> None:
    image = ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")
    response = http.post("/api/detect", files={"file": image}, data=form)
    assert response.status_code == 422, response.text
    assert "keep_alive" in response.json()["error"]["message"]


def test_keep_alive_given_twice_in_an_upload_form_is_a_422(
    http: httpx.Client, media_root: Path
) -> None:
    image = ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")
    form = {"keep_alive": "0", "request": json.dumps({"keep_alive": 0})}
    response = http.post("/api/detect", files={"file": image}, data=form)
    assert response.status_code == 422, response.text
    assert "keep_alive" in response.json()["error"]["message"]


# --- it reaches the pipeline -------------------------------------------------------------------


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each task pipeline (in the server's process) replaced by one that records the
    request's context, then fails the request with a 422 `recorded`."""
    records: list[dict[str, Any]] = []

    async def record(*args: Any, **kwargs: Any) -> Any:
        gone = request_context.client_gone.get()
        records.append(
            {
                "keep_alive": request_context.keep_alive.get(),
                "client_gone": None if gone is None else await gone(),
            }
        )
        raise InvalidInput("recorded")

    async def record_frames(*args: Any, **kwargs: Any) -> Any:
        await record()
        yield  # never reached: an async generator, as track() is

    for module, name in set(PIPELINES.values()):
        monkeypatch.setattr(module, name, record_frames if name == "track" else record)
    return records


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize(("given", "seconds"), [("5m", 300.0), (-1, -1.0), (None, None)])
def test_each_route_hands_its_keep_alive_to_the_pipeline(
    http: httpx.Client, seen: list[dict[str, Any]], path: str, given: Any, seconds: float | None
) -> None:
    body = BODIES[path] if given is None else {**BODIES[path], "keep_alive": given}
    response = http.post(path, json=body)
    assert response.status_code == 422 and response.json()["error"]["message"] == "recorded"
    # The client is still there while the pipeline runs.
    assert seen == [{"keep_alive": seconds, "client_gone": False}]


@pytest.mark.parametrize(
    "form",
    [{"keep_alive": "90s"}, {"request": json.dumps({"keep_alive": 90})}],
    ids=["part", "inside-request"],
)
def test_an_upload_hands_its_keep_alive_to_the_pipeline(
    http: httpx.Client, seen: list[dict[str, Any]], media_root: Path, form: dict[str, str]
) -> None:
    image = ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")
    response = http.post("/api/detect", files={"file": image}, data=form)
    assert response.status_code == 422 and response.json()["error"]["message"] == "recorded"
    assert seen == [{"keep_alive": 90.0, "client_gone": False}]


def test_a_job_hands_its_keep_alive_to_the_pipeline(
    http: httpx.Client, seen: list[dict[str, Any]]
) -> None:
    """The job runs in a worker's task after its request ended: the body's keep_alive still
    reaches its pipeline, and no client can 'leave' its run."""
    for given, seconds in [("1h", 3600.0), (None, None)]:
        body = DETECT if given is None else {**DETECT, "keep_alive": given}
        submitted = http.post("/api/jobs", json={"task": "detect", "body": body})
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(http, submitted.json()["job_id"])
        assert job["status"] == "failed" and job["error"]["message"] == "recorded", job
        assert seen.pop() == {"keep_alive": seconds, "client_gone": None}


def test_load_hands_its_keep_alive_to_the_manager(
    served: BackgroundServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    async def load(name: str, reason: str = "", keep_alive: float | None = None) -> dict[str, Any]:
        calls.append({"name": name, "keep_alive": keep_alive})
        return {"model_id": name, "status": "recorded"}

    # The server runs in this process (on a thread): its manager is at hand.
    monkeypatch.setattr(served.server.config.app.state.manager, "load", load)
    for given, seconds in [("30s", 30.0), ("-1", -1.0), (0, 0.0), (None, None)]:
        body = {"model_id": "owl"} if given is None else {"model_id": "owl", "keep_alive": given}
        assert http.post("/models/load", json=body).json()["status"] == "recorded"
        assert calls.pop() == {"name": "owl", "keep_alive": seconds}
