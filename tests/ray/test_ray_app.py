"""zooserve on a local Ray cluster (CPU, in process): two replicas behind the Ray ingress,
each with its own small byte budget. One cluster for the module (it starts once, ~20 s).

Ray must start here: if it cannot, these tests fail (nothing is skipped).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import yaml
from ray import serve

from tests.conftest import TinyModels
from tests.offline_models import offline_models
from zooserve.api.server import free_port
from zooserve.jobs.queue import JobStore
from zooserve.ray import build_app
from zooserve.ray.asgi import Forwarded
from zooserve.ray.directory import directory

KEY = "ray-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Each replica: 0.95 MB. face (0.93 MB), gdino (0.71 MB) and owl (0.34 MB) each fit alone;
# no two fit together.
BUDGET_MB = 0.95


@pytest.fixture(scope="module")
def ray_config(
    tmp_path_factory: pytest.TempPathFactory, media_root: Path, tiny_models: TinyModels
) -> Path:
    root = tmp_path_factory.mktemp("ray-config")
    config = {
        "device": "cpu",
        "memory_budget_mb": BUDGET_MB,
        "media_root": str(media_root),
        "admission_timeout_s": 5,
        "default_prompts": ["a person", "a cat"],
        "jobs_db": str(root / "shared-jobs.sqlite3"),
        "tasks": {"object_detection": {"selected": "owl", "options": ["owl", "gdino"]}},
        "models": {
            "owl": {"model_id": str(tiny_models.path("owlv2"))},
            "gdino": {
                "model_id": str(tiny_models.path("grounding_dino")),
                "family": "grounding_dino",
            },
            "face": offline_models()["face"],
        },
    }
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_until(what: Callable[[], Any], timeout: float = 30, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = what()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or what}")
        time.sleep(0.1)


def replicas(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/health", headers=AUTH)
    return response.json().get("replicas", []) if response.status_code == 200 else []


@pytest.fixture(scope="module")
def url(ray_config: Path) -> Iterator[str]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        application = build_app(ray_config, 2, num_cpus=0.5, api_key=KEY, debug_routes=True)
        serve.run(application, name="zooserve", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as probe:
            wait_until(lambda: len(replicas(probe)) == 2, 60, "two replicas reporting")
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60, headers=AUTH) as http:
        yield http


def held(client: httpx.Client) -> dict[str, list[str]]:
    """replica -> models loaded there (as its manager says)."""
    return {r["replica"]: sorted(r["models_loaded"]) for r in replicas(client)}


def unload_everywhere(client: httpx.Client) -> None:
    def empty() -> bool:
        loaded = {m for models in held(client).values() for m in models}
        for model in loaded:
            client.post("/models/unload", json={"model_id": model})
        return not loaded

    wait_until(empty, 30, "every replica empty")
    settle(client)


def in_step(views: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The views, when each replica's ids told to Ray are what its manager holds."""
    return views if all(r["ray_model_ids"] == r["models_loaded"] for r in views) else None


def settle(client: httpx.Client) -> list[dict[str, Any]]:
    """Wait until each replica has told Ray what its manager holds, then for Ray to pass it
    on: the replica pushes every 0.1 s, the controller broadcasts to routers on its next
    0.1 s round. Routing is eventually consistent; this waits that out (a few rounds)."""
    views: list[dict[str, Any]] = wait_until(
        lambda: in_step(replicas(client)), message="Ray's view in step"
    )
    time.sleep(1.0)
    return views


def detect(client: httpx.Client, model: str, media: str = "walk.mp4") -> httpx.Response:
    body = {"video_path": media, "frame_numbers": [0], "model": model, "confidence_threshold": 0}
    return client.post("/api/detect", json=body)


def test_same_api_contract(client: httpx.Client, url: str) -> None:
    anonymous = httpx.post(f"{url}/api/detect", json={"video_path": "walk.mp4"})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "unauthorized"
    public = httpx.get(f"{url}/health").json()
    assert public["status"] == "healthy" and "models_loaded" not in public
    assert [set(r) for r in public["replicas"]] == [
        {"replica", "device", "memory_budget_mb", "memory_used_mb"}
    ] * 2
    assert public["memory_budget_mb"] == pytest.approx(2 * BUDGET_MB)

    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    unknown = detect(client, "no-such-model")
    assert unknown.status_code == 404, unknown.text
    assert "available_models" in unknown.json()["error"]["details"]
    invalid = client.post("/api/detect", json={"video_path": "walk.mp4", "frame_numbers": "x"})
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_request"
    form = client.post("/api/detect", content=b"a=b", headers={"content-type": "text/plain"})
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"

    response = client.post(
        "/api/detect",
        json={"video_path": "walk.mp4", "frame_numbers": [29, 3, 3], "confidence_threshold": 0.0},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "owl" and body["prompts"] == ["a person", "a cat"]
    assert [f["frame_number"] for f in body["frames"]] == [29, 3, 3]
    assert response.headers["x-zooserve-replica"] in held(client)
    assert client.get("/openapi.json").json()["info"]["title"] == "zooserve"


def test_async_job_runs_on_a_replica_and_is_kept_in_the_shared_store(
    client: httpx.Client, ray_config: Path
) -> None:
    submitted = client.post(
        "/api/jobs",
        json={"task": "detect", "body": {"video_path": "walk.mp4", "frame_numbers": [1, 2]}},
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_until(finished, 30, "the job to finish")
    assert job["status"] == "succeeded", job
    assert [f["frame_number"] for f in job["result"]["frames"]] == [1, 2]
    shared = yaml.safe_load(ray_config.read_text())["jobs_db"]
    assert job_id in {j.id for j in JobStore(Path(shared)).load_all()}  # the config's store


def test_a_request_goes_to_the_replica_holding_its_model(client: httpx.Client) -> None:
    unload_everywhere(client)
    loaded = client.post("/models/load", json={"model_id": "face"})
    assert loaded.status_code == 200, loaded.text
    holder = loaded.headers["x-zooserve-replica"]
    views = {r["replica"]: r for r in settle(client)}
    assert views[holder]["models_loaded"] == views[holder]["ray_model_ids"] == ["face"]
    for _ in range(6):
        response = detect(client, "face", "astronaut.png")
        assert response.status_code == 200, response.text
        assert response.headers["x-zooserve-replica"] == holder
    assert held(client)[holder] == ["face"]


def test_a_model_that_fits_nowhere_evicts_on_one_replica_only(client: httpx.Client) -> None:
    unload_everywhere(client)
    first = client.post("/models/load", json={"model_id": "face"}).headers["x-zooserve-replica"]
    settle(client)
    for _ in range(3):  # Ray's routers know where face is: face goes there...
        assert detect(client, "face", "astronaut.png").headers["x-zooserve-replica"] == first
    # ... and gdino goes to the replica with the fewest models: the other one.
    second = client.post("/models/load", json={"model_id": "gdino"}).headers["x-zooserve-replica"]
    assert second != first
    settle(client)
    before = held(client)
    assert before == {first: ["face"], second: ["gdino"]}

    # owl fits beside neither face nor gdino: one replica evicts, the other keeps its model.
    owl = client.post("/models/load", json={"model_id": "owl"})
    assert owl.status_code == 200, owl.text
    target = owl.headers["x-zooserve-replica"]
    other = second if target == first else first
    after = wait_until(lambda: (v := held(client))[target] == ["owl"] and v, message="owl in")
    assert after[other] == before[other]
    # Ray's view follows the manager's: the evicted model is no longer routed there.
    views = wait_until(lambda: in_step(replicas(client)), message="Ray's view in step")
    assert {r["replica"]: r["ray_model_ids"] for r in views} == after
    info = client.get("/models/info").json()
    assert info["models"]["owl"]["replicas"] == [target]
    assert info["loaded_models"] == sorted({"owl", *before[other]})


def load_on(replica: str, model: str) -> httpx.Response:
    """Load `model` on one named replica: the directory's ask (Ray routes by model instead)."""
    body = json.dumps({"model_id": model}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", AUTH["Authorization"].encode()),
    ]
    ask = directory("zooserve").ask.remote(
        replica, Forwarded("POST", "/models/load", b"", headers, body), 60
    )
    reply = ray.get(ask)
    assert reply is not None, f"{replica} did not answer"
    return httpx.Response(reply.status, content=reply.body)


def test_unload_acts_on_every_replica_holding_the_model(client: httpx.Client) -> None:
    unload_everywhere(client)
    names = sorted(held(client))
    for replica in names:
        loaded = load_on(replica, "face")
        assert loaded.status_code == 200, loaded.text
    wait_until(lambda: held(client) == {r: ["face"] for r in names}, message="face on both")

    response = client.post("/models/unload", json={"model_id": "face"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "unloaded" and sorted(body["unloaded_from"]) == names
    assert sorted((r["replica"], r["status"]) for r in body["replicas"]) == [
        (name, "unloaded") for name in names
    ]
    assert all(r["http_status"] == 200 and r["model_id"] == "face" for r in body["replicas"])
    wait_until(lambda: held(client) == {r: [] for r in names}, message="face gone everywhere")
    again = client.post("/models/unload", json={"model_id": "face"}).json()
    assert again["status"] == "not_loaded" and again["unloaded_from"] == []
    unknown = client.post("/models/unload", json={"model_id": "no-such-model"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_killing_a_replica_mid_request_gives_503_and_the_app_keeps_serving(
    client: httpx.Client, tmp_path: Path
) -> None:
    pids = {r["pid"] for r in replicas(client)}
    pid_file = tmp_path / "pid"
    answers: list[httpx.Response] = []
    held_open = threading.Thread(
        target=lambda: answers.append(
            client.post("/_debug/hold", params={"pid_file": str(pid_file), "seconds": 60})
        )
    )
    held_open.start()
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the held request")
    pid = int(pid_file.read_text())
    assert pid in pids
    os.kill(pid, signal.SIGKILL)
    held_open.join(30)
    (answer,) = answers
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "replica_unavailable"
    assert int(answer.headers["retry-after"]) >= 1

    def served() -> bool:
        response = detect(client, "owl")
        if response.status_code != 200:  # while Ray notices: a clear 503, never a 500
            assert response.status_code == 503 and "retry-after" in response.headers
        return response.status_code == 200

    wait_until(served, 60, "a detect answered after the kill")
    replaced = wait_until(
        lambda: len(v := replicas(client)) == 2 and pid not in {r["pid"] for r in v} and v,
        60,
        "Ray to replace the killed replica",
    )
    assert len(replaced) == 2


def test_a_stream_cut_by_a_dying_replica_ends_with_an_error_line(
    client: httpx.Client, tmp_path: Path
) -> None:
    """Before: the 200 NDJSON body just stopped (no error line, no summary)."""
    wait_until(lambda: len(replicas(client)) == 2, 60, "two replicas reporting")
    pid_file = tmp_path / "pid"
    params: dict[str, str | int] = {"pid_file": str(pid_file), "seconds": 60}
    with client.stream("POST", "/_debug/stream", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = response.iter_lines()
        assert json.loads(next(lines))["type"] == "frame"
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the stream's pid")
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        rest = [json.loads(line) for line in lines if line]
    assert [line["type"] for line in rest] == ["error"], rest
    assert rest[-1]["error"]["code"] == "replica_unavailable"
