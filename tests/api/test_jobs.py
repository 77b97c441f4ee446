"""Async jobs over HTTP: 202 + polling, progress events (SSE), cancel, a bounded queue, and
persistence across a real restart of a `zooserve serve` subprocess."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.api import subprocess_server
from zooserve.api.server import BackgroundServer, free_port
from zooserve.catalog import load_config


def wait_for(client: httpx.Client, job_id: str, statuses: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}")


def detect_job(frames: list[int]) -> dict:
    return {
        "task": "detect",
        "body": {
            "video_path": "walk.mp4",
            "frame_numbers": frames,
            "model": "owl",
            "confidence_threshold": 0.0,
        },
    }


def test_job_runs_reports_progress_and_keeps_its_result(client: httpx.Client) -> None:
    response = client.post("/api/jobs", json=detect_job(list(range(10))))
    assert response.status_code == 202 and response.headers["location"].startswith("/api/jobs/")
    job = wait_for(client, response.json()["job_id"], ("succeeded", "failed"))
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 10, "total": 10}
    assert [f["frame_number"] for f in job["result"]["frames"]] == list(range(10))
    assert job["result"]["model"] == "owl"


def test_events_stream_progress_then_the_terminal_state(client: httpx.Client) -> None:
    job_id = client.post("/api/jobs", json=detect_job(list(range(12)))).json()["job_id"]
    events = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
    assert events[-1] == "succeeded" and data["progress"]["done"] == 12
    assert set(events[:-1]) <= {"progress"}


def test_bad_job_bodies_are_422(client: httpx.Client) -> None:
    response = client.post("/api/jobs", json={"task": "dance", "body": {}})
    assert response.status_code == 422 and "unknown task" in response.json()["error"]["message"]
    response = client.post("/api/jobs", json={"task": "detect", "body": {"frame_numbers": [0]}})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["location"] == "video_path"
    assert client.get("/api/jobs/nope").status_code == 404


def test_a_failing_job_records_the_error(client: httpx.Client) -> None:
    body = detect_job([999])
    job = wait_for(client, client.post("/api/jobs", json=body).json()["job_id"], ("failed",))
    assert job["error"]["code"] == "frames_out_of_range"


@pytest.fixture
def small_queue(media_root: Path, tmp_path: Path, zoo_config: Path) -> Iterator[httpx.Client]:
    config = yaml.safe_load(zoo_config.read_text())
    config.update(max_queued_jobs=1, jobs_db=str(tmp_path / "jobs.sqlite3"))
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path)) as server, httpx.Client(base_url=server.url) as http:
        yield http


def test_queue_is_bounded_and_queued_jobs_can_be_cancelled(small_queue: httpx.Client) -> None:
    statuses, ids = [], []
    for _ in range(4):
        response = small_queue.post("/api/jobs", json=detect_job(list(range(30))))
        statuses.append(response.status_code)
        if response.status_code == 202:
            ids.append(response.json()["job_id"])
        else:
            assert (
                response.headers["retry-after"] and response.json()["error"]["code"] == "queue_full"
            )
    assert 429 in statuses
    cancelled = small_queue.delete(f"/api/jobs/{ids[-1]}").json()
    assert cancelled["status"] in ("cancelled", "succeeded")
    assert (
        wait_for(small_queue, ids[-1], ("cancelled", "succeeded"))["status"] == cancelled["status"]
    )


def serve(config: Path, port: int) -> subprocess.Popen:
    return subprocess_server.start(config, port)


def test_jobs_survive_a_killed_server(zoo_config: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(zoo_config.read_text())
    db = tmp_path / "jobs.sqlite3"
    config["jobs_db"] = str(db)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = serve(path, port)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            job_id = http.post("/api/jobs", json=detect_job([0, 1])).json()["job_id"]
            finished = wait_for(http, job_id, ("succeeded", "failed"))
            assert finished["status"] == "succeeded", finished["error"]
    finally:
        process.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
        process.wait()
    # A job that was running at the crash: what the killed process left in the database.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE jobs SET status='running', result=NULL WHERE id != ?", (job_id,))
        conn.execute(
            "INSERT INTO jobs VALUES ('crashed','detect','{}','running',3,10,NULL,NULL,1,2,NULL)"
        )
    process = serve(path, port)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            again = http.get(f"/api/jobs/{job_id}").json()
            crashed = http.get("/api/jobs/crashed").json()
    finally:
        process.terminate()
        process.wait()
    assert again["status"] == "succeeded" and again["result"] == finished["result"]
    assert crashed["status"] == "failed" and crashed["error"]["code"] == "interrupted"
