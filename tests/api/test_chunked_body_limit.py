"""Over HTTP, on a server of its own (the shared one keeps its order): the body limit on a
chunked request (no Content-Length) to a route with a pydantic body.

The scheduler's races are proven in tests/manager/test_races.py, not here: over HTTP a tiny
model loads in milliseconds, so two requests rarely overlap a load and a test could not tell
a fixed scheduler from a lucky one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config


def server_for(zoo_config: Path, tmp_path: Path, **changes: object) -> BackgroundServer:
    config = yaml.safe_load(zoo_config.read_text())
    config.update(jobs_db=str(tmp_path / "jobs.sqlite3"), **changes)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    return BackgroundServer(load_config(path))


def test_a_chunked_body_over_the_limit_is_413(zoo_config: Path, tmp_path: Path) -> None:
    with (
        server_for(zoo_config, tmp_path, max_request_mb=0.01) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):

        def chunks() -> Iterator[bytes]:  # no Content-Length: only the running count sees it
            yield b'{"task": "detect", "body": {"video_path": "'
            for _ in range(20):
                yield b"x" * 1024
            yield b'"}}'

        response = client.post(
            "/api/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
