"""The scheduler as HTTP shows it: a full admission queue is a 429 with Retry-After and the
error envelope; /health (with the key) and /metrics show the queue and the ledger."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from zooserve.api.errors import install_error_handlers
from zooserve.core.errors import QueueFull
from zooserve.runtimes.memory import MB


@pytest.fixture(scope="module")
def refusing() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/full")
    async def full(retry_after: float | None = None) -> None:
        raise QueueFull("64 requests wait for memory", {"pending": 64}, retry_after=retry_after)

    return TestClient(app)


@pytest.mark.parametrize(("retry_after", "header"), [(7.0, "7"), (0.2, "1"), (None, "1")])
def test_queue_full_is_a_429_with_retry_after_and_the_envelope(
    refusing: TestClient, retry_after: float | None, header: str
) -> None:
    response = refusing.get(
        "/full", params={} if retry_after is None else {"retry_after": retry_after}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == header
    assert response.json() == {
        "error": {
            "code": "queue_full",
            "message": "64 requests wait for memory",
            "details": {"pending": 64},
        }
    }


def test_health_shows_the_scheduler_beside_its_other_keys(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert {"status", "device", "memory_budget_mb", "memory_used_mb", "models_loaded"} <= set(body)
    scheduler = body["scheduler"]
    keys = {"pending", "max_pending", "used_bytes", "peak_used_bytes", "budget_bytes"}
    assert keys <= set(scheduler), scheduler
    assert scheduler["pending"] == 0 and scheduler["max_pending"] >= 1
    assert scheduler["budget_bytes"] / MB == pytest.approx(body["memory_budget_mb"])
    assert scheduler["peak_used_bytes"] >= scheduler["used_bytes"] >= 0


def test_metrics_show_the_admission_queue(client: httpx.Client) -> None:
    lines = client.get("/metrics").text.splitlines()
    values = {line.split()[0]: float(line.split()[1]) for line in lines if line[:1] not in "#"}
    assert values["zooserve_pending_requests"] == 0
    assert values["zooserve_max_pending_requests"] >= 1
    assert values["zooserve_memory_peak_used_bytes"] >= values["zooserve_memory_used_bytes"]
