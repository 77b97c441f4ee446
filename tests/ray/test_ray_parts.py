"""The Ray app's parts that need no cluster: routing keys, Ray's view of a replica's models,
and the merged cluster views."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ray.exceptions import RayError

from zooserve.catalog import load_config
from zooserve.manager import ModelManager
from zooserve.ray.asgi import Forwarded, Start
from zooserve.ray.ingress import Forwarder, ReplicaUnavailable
from zooserve.ray.replica import MULTIPLEX_ATTR, ModelToken, ray_model_ids, sync_ray_view
from zooserve.ray.routing import request_fields, routing_key
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


def test_request_fields_reads_json_and_the_multipart_request_part() -> None:
    assert request_fields("application/json", b'{"model": "owl"}') == {"model": "owl"}
    assert request_fields("application/json", b"[1, 2") == {}
    assert request_fields("application/json", b"[1]") == {}
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        b'\x89PNG name="request"\r\n--XyZ\r\nContent-Disposition: form-data; name="request"'
        b'\r\n\r\n{"model": "gdino"}\r\n--XyZ--\r\n'
    )
    assert request_fields('multipart/form-data; boundary="XyZ"', body) == {"model": "gdino"}
    assert request_fields("text/plain", b'{"model": "owl"}') == {}


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

    def __init__(self, failures: int, midway: bool = False) -> None:
        self.failures, self.midway, self.calls = failures, midway, 0

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
            yield Start(200, [(b"content-type", b"application/json")])
            if dies:
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
