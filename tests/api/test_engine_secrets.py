"""An engine's credentials never leak through zooserve (issue #21, item 1).

A real OpenAI-compatible server on 127.0.0.1 refuses every chat completion with a 401 whose
body quotes the bearer token it was sent (as OpenAI's own "Incorrect API key provided: sk-..."
does) and pads it with a long trace. Through a real zooserve server, the key must appear in
none of: the 503 of /api/summarize and /api/augment, a failed job's record, the SQLite file,
the log records; and the engine's text is bounded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

ENGINE_KEY = "sk-leaky-engine-key-8c1f0e"
KEY_ENV = "ZOOSERVE_TEST_LEAKY_ENGINE_KEY"
#: The engine's error body is this long; a failure may repeat a bounded part of it only.
TRACE = "x" * 5000
SUMMARIZE = {"video_path": "walk.mp4", "persona_context": "a guard", "frame_count": 2}
AUGMENT = {"persona_name": "guard", "domain_context": "a warehouse"}


class LeakyEngine(BaseHTTPRequestHandler):
    """Healthy to probes; answers every POST with a 401 that echoes the bearer token sent."""

    def log_message(self, format: str, *args: object) -> None:  # quiet access log
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sent = self.headers.get("Authorization", "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {sent}. Authorization: Bearer {sent} {TRACE}"
        data = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


@pytest.fixture(scope="module")
def leaky_engine() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LeakyEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(
    leaky_engine: str, media_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """(url, jobs database) of a zooserve whose only engine is the leaky one."""
    base = tmp_path_factory.mktemp("engine-secrets")
    chat = {"selected": "chat", "options": ["chat"]}
    config = {
        "device": "cpu",
        "media_root": str(media_root),
        "jobs_db": str(base / "jobs.sqlite3"),
        "tasks": {"video_summarization": chat, "ontology_augmentation": chat},
        "models": {"chat": {"model_id": "/none/chat", "category": "llm"}},
        "engines": [
            {
                "name": "keyed",
                "kind": "openai",
                "base_url": leaky_engine,
                "models": ["chat"],
                "api_key_env": KEY_ENV,
                # Each request dials it (a failure is "known down" for this long only).
                "health_interval_s": 0.001,
            }
        ],
    }
    path = base / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, ENGINE_KEY)
        with BackgroundServer(load_config(path)) as server:
            yield server.url, base / "jobs.sqlite3"


@pytest.mark.parametrize(
    ("path", "body"), [("/api/summarize", SUMMARIZE), ("/api/augment", AUGMENT)]
)
def test_a_503_never_repeats_the_engine_key(
    served: tuple[str, Path], path: str, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = served
    with caplog.at_level("WARNING"):
        response = httpx.post(url + path, json=body, timeout=60)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "no_engine_available"
    (failure,) = error["details"]["failures"]
    assert failure["engine"] == "keyed" and failure["status"] == 401
    assert "Incorrect API key provided: ***" in failure["reason"]  # the engine's words, hidden
    assert len(failure["reason"]) < 700  # the 5,000-character body is bounded
    assert ENGINE_KEY not in response.text
    warnings = [r.getMessage() for r in caplog.records if r.name == "zooserve.engines"]
    assert any("engine keyed failed" in line for line in warnings), warnings
    assert not [line for line in map(logging_text, caplog.records) if ENGINE_KEY in line]


def logging_text(record: Any) -> str:
    """What a handler could write of a record: its message and any traceback."""
    return record.getMessage() + (record.exc_text or "")


def test_a_failed_job_and_its_row_never_hold_the_engine_key(served: tuple[str, Path]) -> None:
    url, database = served
    submitted = httpx.post(url + "/api/jobs", json={"task": "augment", "body": AUGMENT})
    assert submitted.status_code == 202, submitted.text
    job_url = f"{url}/api/jobs/{submitted.json()['job_id']}"
    record: dict[str, Any] = {}
    for _ in range(600):  # a bound, not a timing assertion
        record = httpx.get(job_url).json()
        if record["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert record["status"] == "failed", record
    assert record["error"]["code"] == "no_engine_available"
    assert "Incorrect API key provided: ***" in json.dumps(record["error"])
    assert ENGINE_KEY not in json.dumps(record)
    listed = httpx.get(url + "/api/jobs").text
    assert ENGINE_KEY not in listed
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"Incorrect API key provided: ***" in stored  # the row was written, and read here
    assert ENGINE_KEY.encode() not in stored
