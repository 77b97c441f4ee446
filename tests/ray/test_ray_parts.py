"""The Ray app's parts that need no cluster: routing keys, Ray's view of a replica's models,
the merged cluster views, the ingress's upload spooling and a stream cut by a dying replica.
The replicas' handle is a stand-in here (the cluster tests in test_ray_app.py run the real
one)."""

from __future__ import annotations

import hashlib
import itertools
import json
import tracemalloc
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from ray.exceptions import RayError

from zooserve.catalog import load_config
from zooserve.manager import ModelManager
from zooserve.ray.asgi import Forwarded, Reply, Start
from zooserve.ray.forwarding import Forwarder, ReplicaUnavailable
from zooserve.ray.ingress import build_ingress_app
from zooserve.ray.replica import MULTIPLEX_ATTR, ModelToken, ray_model_ids, sync_ray_view
from zooserve.ray.routing import request_fields, routing_key
from zooserve.ray.spool import spool_body
from zooserve.ray.unload import merge_unloads
from zooserve.ray.views import merge_health, merge_models_info, public_health


@pytest.fixture(scope="module")
def selector(zoo_config: Path) -> ModelManager:
    return ModelManager(load_config(zoo_config))


def test_routing_key_is_the_model_the_request_will_use(selector: ModelManager) -> None:
    assert routing_key(selector, "/api/detect", {"model": "gdino"}) == "gdino"
    assert routing_key(selector, "/api/detect", {}) == "owl"  # the task's selected model
    assert routing_key(selector, "/models/load", {"model_id": "face"}) == "face"
    # Unknown models and routes without a model: any replica (it answers the 404 itself).
    assert routing_key(selector, "/api/detect", {"model": "nope"}) is None
    assert routing_key(selector, "/metrics", {"model": "owl"}) is None
    assert routing_key(selector, "/api/detect", {"prompts": "not a list"}) == "owl"


def test_request_fields_reads_json() -> None:
    assert request_fields("application/json", b'{"model": "owl"}') == {"model": "owl"}
    assert request_fields("application/json", b"[1, 2") == {}
    assert request_fields("application/json", b"[1]") == {}
    assert request_fields("text/plain", b'{"model": "owl"}') == {}


async def chunks_of(body: bytes, size: int) -> Any:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_an_upload_is_spooled_and_its_request_part_read_on_the_way(tmp_path: Path) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        b'\x89PNG name="request"\r\n--XyZ\r\nContent-Disposition: form-data; name="request"'
        b'\r\n\r\n{"model": "gdino"}\r\n--XyZ--\r\n'
    )
    content_type = 'multipart/form-data; boundary="XyZ"'
    for size in (1, 7, len(body)):  # the part's headers and value split across chunks
        spool = await spool_body(chunks_of(body, size), content_type, tmp_path)
        assert spool.fields == {"model": "gdino"}
        assert spool.path.read_bytes() == body and spool.size == len(body)
        assert spool.path.is_relative_to(tmp_path / ".uploads-ray")
        spool.remove()
        assert not spool.path.parent.exists()
    broken = await spool_body(chunks_of(b"--XyZ\r\nnot a part", 4), content_type, tmp_path)
    assert broken.fields == {} and broken.path.read_bytes() == b"--XyZ\r\nnot a part"


def owner(*ids: str) -> Any:
    wrapper = SimpleNamespace(
        models=OrderedDict((i, ModelToken(i)) for i in ids), _push_multiplexed_replica_info=False
    )
    return SimpleNamespace(**{MULTIPLEX_ATTR: wrapper})


def test_ray_view_follows_the_manager_and_is_pushed_only_on_change() -> None:
    replica = owner("owl", "gdino")
    assert sync_ray_view(replica, {"owl", "face"}) is True  # gdino evicted, face loaded
    assert ray_model_ids(replica) == ["face", "owl"]
    assert getattr(replica, MULTIPLEX_ATTR)._push_multiplexed_replica_info is True
    getattr(replica, MULTIPLEX_ATTR)._push_multiplexed_replica_info = False
    assert sync_ray_view(replica, {"owl", "face"}) is False
    assert getattr(replica, MULTIPLEX_ATTR)._push_multiplexed_replica_info is False
    assert sync_ray_view(SimpleNamespace(), {"owl"}) is False  # no multiplexed call yet


def report(replica: str, loaded: list[str], used: float) -> dict[str, Any]:
    health = {
        "status": "healthy", "device": "cuda:0", "gpu_memory_allocated": 10,
        "gpu_memory_reserved": 20, "memory_budget_mb": 100.0, "memory_used_mb": used,
        "process_rss_mb": 1.0, "nvml": None, "models_loaded": loaded, "engines": None,
        "scheduler": {"pending": 0},
    }  # fmt: skip
    info = {
        "available_models": {"object_detection": ["owl"]}, "loaded_models": loaded,
        "device": "cuda:0", "memory_budget_mb": 100.0, "memory_used_mb": used,
        "models": {"owl": {"status": "loaded" if "owl" in loaded else "unloaded"}},
        "events": [{"kind": "load", "model": m, "time": used} for m in loaded],
    }  # fmt: skip
    return {"replica": replica, "pid": 7, "node": "n", "ray_model_ids": loaded,
            "health": health, "models_info": info}  # fmt: skip


def test_merged_views_say_which_replica_holds_what() -> None:
    reports = [report("a", ["owl"], 30.0), report("b", [], 5.0)]
    health = merge_health(reports, detailed=True)
    assert health["memory_budget_mb"] == 200.0 and health["memory_used_mb"] == 35.0
    assert health["gpu_memory_allocated"] == 20 and health["models_loaded"] == ["owl"]
    assert [(r["replica"], r["models_loaded"]) for r in health["replicas"]] == [
        ("a", ["owl"]),
        ("b", []),
    ]
    public = public_health(merge_health(reports, detailed=False))
    assert "models_loaded" not in public and "pid" not in json.dumps(public)
    assert merge_health([], detailed=True)["status"] == "unavailable"
    info = merge_models_info(reports)
    assert info["models"]["owl"]["status"] == "loaded" and info["models"]["owl"]["replicas"] == [
        "a"
    ]
    assert info["events"][0]["replica"] == "a" and info["loaded_models"] == ["owl"]


class FlakyReplicas:
    """A stand-in for the replicas' handle: the first `failures` calls die (before answering,
    or midway through the body when `midway`), later ones answer 200 {"ok": true}."""

    def __init__(
        self, failures: int, midway: bool = False, content_type: str = "application/json"
    ) -> None:
        self.failures, self.midway, self.calls = failures, midway, 0
        self.content_type = content_type.encode()

    def options(self, **options: Any) -> FlakyReplicas:
        assert options["stream"] is True
        return self

    @property
    def handle(self) -> FlakyReplicas:
        return self

    def remote(self, request: Forwarded) -> Any:
        self.calls += 1
        dies = self.calls <= self.failures

        async def stream() -> Any:
            if dies and not self.midway:
                raise RayError("replica died")
            yield Start(200, [(b"content-type", self.content_type)])
            if dies:
                yield b'{"type": "frame"}\n'
                raise RayError("replica died")
            yield b'{"ok": true}'

        return stream()


async def test_idempotent_requests_are_retried_others_get_503() -> None:
    replicas = FlakyReplicas(failures=1)
    start, body = await Forwarder(replicas).open(Forwarded("GET", "/metrics"), None, tries=3)
    assert start.status == 200 and [c async for c in body] == [b'{"ok": true}']
    assert body.complete and replicas.calls == 2

    with pytest.raises(ReplicaUnavailable) as refused:
        await Forwarder(FlakyReplicas(failures=1)).open(Forwarded("POST", "/api/detect"), "owl")
    assert refused.value.status == 503 and refused.value.retry_after


async def test_a_jobs_work_is_rerun_when_its_replica_dies_midway() -> None:
    replicas = FlakyReplicas(failures=1, midway=True)
    status, answer = await Forwarder(replicas).fetch(Forwarded("POST", "/api/detect"), None, 3)
    assert (status, answer, replicas.calls) == (200, {"ok": True}, 2)


async def test_a_stream_cut_by_a_dying_replica_ends_with_an_error_line() -> None:
    replicas = FlakyReplicas(failures=1, midway=True, content_type="application/x-ndjson")
    start, body = await Forwarder(replicas).open(Forwarded("POST", "/api/track"), None)
    lines = b"".join([c async for c in body]).splitlines()
    assert start.status == 200 and not body.complete
    assert [json.loads(line)["type"] for line in lines] == ["frame", "error"]
    assert json.loads(lines[-1])["error"]["code"] == "replica_unavailable"
    # Any other body is only cut short (a JSON client sees it is incomplete).
    start, body = await Forwarder(FlakyReplicas(1, midway=True)).open(Forwarded("GET", "/"), None)
    assert [c async for c in body] == [b'{"type": "frame"}\n'] and not body.complete


def answer(status: int, body: dict[str, Any], retry_after: str | None = None) -> Reply:
    headers = [(b"retry-after", retry_after.encode())] if retry_after else []
    return Reply(status, headers, json.dumps(body).encode())


UNLOADED = answer(200, {"model_id": "face", "status": "unloaded", "recovered_bytes": 9})
NOT_LOADED = answer(200, {"model_id": "face", "status": "not_loaded"})
IN_USE = answer(409, {"error": {"code": "model_in_use", "message": "busy", "details": {}}}, "1")


@pytest.mark.parametrize(
    ("replies", "status", "code", "unloaded_from"),
    [
        ([UNLOADED, UNLOADED], 200, None, ["a", "b"]),
        ([NOT_LOADED, UNLOADED], 200, None, ["b"]),
        ([UNLOADED, IN_USE], 409, "model_in_use", ["a"]),
        ([None, IN_USE], 409, "model_in_use", []),  # a caller can act on 409: before 503
        ([NOT_LOADED, None], 503, "replica_unavailable", []),
    ],
)
def test_a_cluster_unload_says_what_each_replica_did(
    replies: list[Reply | None], status: int, code: str | None, unloaded_from: list[str]
) -> None:
    response = merge_unloads(["a", "b"], replies)
    body = json.loads(bytes(response.body))
    assert response.status_code == status
    merged = body if code is None else body["error"]["details"]
    assert merged["unloaded_from"] == unloaded_from
    assert [(r["replica"], r["http_status"]) for r in merged["replicas"]] == [
        ("a", 503 if replies[0] is None else replies[0].status),
        ("b", 503 if replies[1] is None else replies[1].status),
    ]
    if code is None:
        assert body["status"] == ("unloaded" if unloaded_from else "not_loaded")
    else:
        assert body["error"]["code"] == code and int(response.headers["retry-after"]) >= 1
    assert merge_unloads([], []).status_code == 503


class SpoolReader:
    """A stand-in for the replicas' handle that reads a spooled upload where a replica would
    (its path, while the request is in flight) and records what it found."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def options(self, **options: Any) -> SpoolReader:
        self.model = options.get("multiplexed_model_id")
        return self

    @property
    def handle(self) -> SpoolReader:
        return self

    def remote(self, request: Forwarded) -> Any:
        async def stream() -> Any:
            digest = hashlib.sha256()
            assert request.body_path is not None
            with open(request.body_path, "rb") as spooled:
                while chunk := spooled.read(1 << 20):
                    digest.update(chunk)
            self.seen.append({"body": request.body, "sha256": digest.hexdigest()})
            yield Start(200, [(b"content-type", b"application/json")])
            yield b'{"ok": true}'

        return stream()


async def test_the_ingress_spools_an_upload_instead_of_holding_it(
    zoo_config: Path, tmp_path: Path
) -> None:
    """Before: the ingress read each upload whole (`await request.body()`), so a 32 MB upload
    took 32 MB+ of the ingress's memory; now its peak stays near one write chunk."""
    config = load_config(zoo_config).model_copy(update={"media_root": tmp_path})
    reader = SpoolReader()
    app = build_ingress_app(config, None, Forwarder(reader), directory=None)
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
    tail = b'\r\n--B\r\nContent-Disposition: form-data; name="request"\r\n\r\n{"model": "gdino"}'
    sent = hashlib.sha256()

    async def upload() -> Any:  # 32 MB, made as it is sent
        chunks = (bytes([i % 251]) * (64 << 10) for i in range(512))
        for part in itertools.chain([head], chunks, [tail, b"\r\n--B--\r\n"]):
            sent.update(part)
            yield part

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        tracemalloc.start()
        try:
            response = await client.post(
                "/api/detect",
                content=upload(),
                headers={"content-type": "multipart/form-data; boundary=B"},
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert reader.seen == [{"body": b"", "sha256": sent.hexdigest()}]  # 32 MB, on disk
    assert reader.model == "gdino"  # routed by the `request` part that came after the file
    assert peak < 8 << 20, f"the ingress held {peak / 2**20:.1f} MB for a 32 MB upload"
    assert list((tmp_path / ".uploads-ray").iterdir()) == []  # removed after the answer
