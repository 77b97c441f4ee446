"""A request whose client disconnects stops at its next batch (issue #21 item 7): detect,
track and enrich over 80 frames on a real server (uvicorn on 127.0.0.1) with OpenCV's shipped
face cascade. An async job, which has no client, still runs to its end.

The cascade is the real one; its subclass only counts the frames it ran on and holds its first
batch until the test has dropped the client and the server has seen the socket close, so the
drop lands mid-request however fast or loaded the machine is (no timing in the assertions).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import VIDEO_FRAMES, scene
from tests.videos import encode_video
from zooserve.api.server import BackgroundServer
from zooserve.catalog import Config, ModelSpec
from zooserve.families.base import ModelAdapter
from zooserve.families.opencv.detectors import CascadeDetector
from zooserve.manager import ModelManager, default_adapter_factory

FRAMES = 80
BATCH = 4
PERSONS = {"classes": ["person"]}
ENDED = ("succeeded", "failed", "cancelled")  # a job's final states
PERSON = {"label": "person", "confidence": 0.9, "bbox": {"x1": 0, "y1": 0, "x2": 190, "y2": 126}}


@dataclass
class Probe:
    """What the cascade ran: frames counted as they enter a forward pass."""

    frames: int = 0
    entered: threading.Event = field(default_factory=threading.Event)  # first batch started
    release: threading.Event = field(default_factory=threading.Event)  # first batch may run

    def reset(self) -> None:
        self.frames = 0
        self.entered.clear()
        self.release.clear()


class CountingCascade(CascadeDetector):
    probe: Probe

    def forward(self, batch: Any) -> Any:
        if self.probe.frames == 0:
            self.probe.entered.set()
            self.probe.release.wait(timeout=60)
        self.probe.frames += len(batch)
        return super().forward(batch)


def make_factory(probe: Probe) -> Callable[[ModelSpec, str, str], ModelAdapter]:
    def factory(spec: ModelSpec, source: str, device: str) -> ModelAdapter:
        if spec.family != "opencv_cascade":
            return default_adapter_factory(spec, source, device)
        adapter = CountingCascade(spec, source, device)
        adapter.probe = probe
        return adapter

    return factory


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, probe: Probe) -> Iterator[BackgroundServer]:
    media = tmp_path_factory.mktemp("long-media")
    encode_video(media / "long.mp4", (scene(i % VIDEO_FRAMES) for i in range(FRAMES + 16)))
    face = {
        "model_id": "opencv:haarcascade_frontalface_default.xml",
        "family": "opencv_cascade",
        "framework": "opencv",
        "options": {"label": "face", "batch_size": BATCH, "min_size": 8},
    }
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 16,
            "media_root": str(media),
            "jobs_db": str(media / "jobs.sqlite3"),
            "tasks": {
                "object_detection": {"selected": "face", "options": ["face"]},
                "video_tracking": {"selected": "face-bytetrack", "options": ["face-bytetrack"]},
            },
            "models": {
                "face": face,
                "face-bytetrack": {
                    "model_id": "builtin:bytetrack",
                    "family": "detection_tracker",
                    "category": "tracking",
                    "options": {"detector": "face"},
                },
            },
            "zoo": {"triggers": [{"name": "faces", "model": "face", "when": PERSONS}]},
        }
    )
    manager = ModelManager(config, adapter_factory=make_factory(probe))
    with BackgroundServer(config, manager=manager) as running:
        yield running


REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "detect": ("/api/detect", {"frame_numbers": list(range(FRAMES))}),
    "track": ("/api/track", {"frame_range": {"start": 0, "end": FRAMES - 1}, "prompts": ["face"]}),
    "enrich": (
        "/api/enrich",
        {
            "frame_numbers": list(range(FRAMES)),
            "detections": [{**PERSON, "frame_number": n} for n in range(FRAMES)],
            "triggers": ["faces"],
        },
    ),
}


def raw_post(url: str, route: str, body: dict[str, Any]) -> socket.socket:
    """Send a request on a plain socket, so the test decides when the client vanishes."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps({"video_path": "long.mp4", **body}).encode()
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def finished(http: httpx.Client, route: str) -> Counter[str]:
    """The server's own count of finished requests on `route`, by status."""
    counts: Counter[str] = Counter()
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("zooserve_requests_total{") and f'route="{route}"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("task", sorted(REQUESTS))
def test_a_dropped_request_stops_at_its_next_batch(
    server: BackgroundServer, probe: Probe, task: str
) -> None:
    route, body = REQUESTS[task]
    probe.reset()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        before = finished(http, route)
        sock = raw_post(server.url, route, body)
        assert probe.entered.wait(timeout=60), "the first batch never started"
        sock.close()  # the client vanishes during its first batch
        connections = server.server.server_state.connections
        wait_for(lambda: len(connections) == 1, "the server to see the client's socket close")
        probe.release.set()
        wait_for(lambda: finished(http, route).total() > before.total(), "the request to end")
        ended = finished(http, route) - before
    assert probe.frames <= 2 * BATCH, f"{probe.frames} of {FRAMES} frames ran for nobody"
    assert ended == Counter({"499": 1})  # request_cancelled, as a queued request


def test_a_request_whose_client_stays_runs_every_frame(
    server: BackgroundServer, probe: Probe
) -> None:
    """The control: the count is of real work, and a present client is never stopped."""
    route, body = REQUESTS["detect"]
    probe.reset()
    probe.release.set()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(route, json={"video_path": "long.mp4", **body})
    assert response.status_code == 200, response.text
    assert len(response.json()["frames"]) == FRAMES and probe.frames == FRAMES


def test_a_job_runs_to_its_end_after_its_submitter_left(
    server: BackgroundServer, probe: Probe
) -> None:
    _, body = REQUESTS["detect"]
    probe.reset()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(
            "/api/jobs", json={"task": "detect", "body": {"video_path": "long.mp4", **body}}
        )
        assert response.status_code == 202, response.text
        job = response.json()["job_id"]
    assert probe.entered.wait(timeout=60), "the job never started"
    connections = server.server.server_state.connections
    wait_for(lambda: not connections, "the submitter's connection to close")
    probe.release.set()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        wait_for(lambda: http.get(f"/api/jobs/{job}").json()["status"] in ENDED, "its end")
        assert http.get(f"/api/jobs/{job}").json()["status"] == "succeeded"
    assert probe.frames == FRAMES
