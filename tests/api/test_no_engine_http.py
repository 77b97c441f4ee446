"""Summarize and augment on a server without a language engine for them: a declared task with
no engine behind it is the server's condition (503 `no_engine_available`, as the README says);
a task the server does not declare is the caller's (422 `invalid_input`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

SUMMARIZE = {"video_path": "walk.mp4", "persona_context": "a guard", "frame_count": 2}


@pytest.fixture(scope="module")
def engineless(media_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Declares video_summarization (no engine lists its model); not ontology_augmentation."""
    base = tmp_path_factory.mktemp("no-engine")
    config = {
        "device": "cpu",
        "media_root": str(media_root),
        "jobs_db": str(base / "jobs.sqlite3"),
        "tasks": {"video_summarization": {"selected": "chat", "options": ["chat"]}},
        "models": {"chat": {"model_id": "/none/chat", "category": "llm"}},
    }
    path = base / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path)) as server:
        yield server.url


def test_a_declared_task_without_an_engine_is_a_503(engineless: str) -> None:
    response = httpx.post(engineless + "/api/summarize", json=SUMMARIZE, timeout=60)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    error = response.json()["error"]
    assert error["code"] == "no_engine_available"
    assert error["details"]["options"] == ["chat"] and error["details"]["failures"] == []


def test_an_undeclared_task_is_the_callers_422(engineless: str) -> None:
    response = httpx.post(engineless + "/api/augment", json={"persona_name": "guard"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "not configured" in error["message"]
