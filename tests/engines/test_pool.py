"""Failover bookkeeping and health probes against real sockets: ports nobody listens on, and a
live engine process (sleepy_server.py) started and stopped under the pool's eyes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from zooserve.api.server import free_port
from zooserve.catalog import Config
from zooserve.catalog.engines import EngineSpec
from zooserve.core.errors import InvalidInput, ModelNotFound, NoEngineAvailable
from zooserve.engines.launch import ManagedEngine, build_command
from zooserve.engines.pool import EnginePool
from zooserve.engines.types import ChatMessage, GenerationRequest
from zooserve.manager import ModelManager

SCRIPT = str(Path(__file__).with_name("sleepy_server.py"))
REQUEST = GenerationRequest(model="m", messages=(ChatMessage("user", "hi"),))


def make_pool(*urls: str) -> EnginePool:
    engines = [
        {"name": f"e{i}", "kind": "vllm", "base_url": url, "models": ["m"], "timeout_s": 5}
        for i, url in enumerate(urls)
    ]
    config = Config(
        device="cpu",
        models={"m": {"model_id": "/none"}, "other": {"model_id": "/none"}},
        tasks={"ontology_augmentation": {"selected": "m", "options": ["other", "m"]}},  # type: ignore[dict-item]
        engines=engines,  # type: ignore[arg-type]
    )
    return EnginePool(config, ModelManager(config))


async def test_all_down_is_a_503_naming_each_then_known_down_engines_are_skipped() -> None:
    pool = make_pool(f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(NoEngineAvailable) as caught:  # absent, not busy: no service_busy
        await pool.generate(REQUEST)
    assert caught.value.code == "no_engine_available"
    failures = caught.value.details["failures"]
    assert [f["engine"] for f in failures] == ["e0", "e1"]
    assert all("unreachable" in f["reason"] for f in failures)
    assert caught.value.retry_after and "e0: unreachable" in caught.value.message
    assert {s["state"] for s in pool.engine_status().values()} == {"down"}
    assert not pool.available("m")

    started = time.perf_counter()
    with pytest.raises(NoEngineAvailable) as again:
        await pool.generate(REQUEST)
    assert all(f["reason"].startswith("down: unreachable") for f in again.value.details["failures"])
    assert time.perf_counter() - started < 1.0  # nothing was dialled


async def test_probes_follow_a_live_engine_up_and_down() -> None:
    port = free_port()
    spec = EngineSpec(
        name="live",
        kind="openai",
        base_url=f"http://127.0.0.1:{port}",
        models=["m"],
        launch={"command": [sys.executable, SCRIPT, "{port}"], "ready_timeout_s": 15},  # type: ignore[arg-type]
    )
    process = ManagedEngine(spec, *build_command(spec, "", "", None), ledger=None)
    pool = make_pool(f"http://127.0.0.1:{free_port()}", spec.base_url or "")
    await process.start()
    try:
        await pool.probe_all()
        status = pool.engine_status()
        assert status["e0"]["state"] == "down" and status["e1"]["state"] == "up"
        assert status["e1"]["detail"] == "GET /health 200" and pool.available("m")
        generation = await pool.generate(REQUEST)
        assert generation.engine == "e1" and generation.text == "awake and answering"
        assert [f.engine for f in generation.failures] == ["e0"]
        assert generation.usage == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    finally:
        await process.stop()
    await pool.probe_all()
    assert pool.engine_status()["e1"]["state"] == "down"
    await pool.close()


def test_model_selection() -> None:
    pool = make_pool("http://127.0.0.1:9")
    # "other" is an option but no engine serves it: the first served option is used.
    assert pool.select_model("ontology_augmentation", None) == "m"
    with pytest.raises(InvalidInput, match="not served by any engine"):
        pool.select_model("ontology_augmentation", "other")
    with pytest.raises(ModelNotFound):
        pool.select_model("ontology_augmentation", "nope")
    with pytest.raises(InvalidInput, match="not configured"):
        pool.select_model("video_summarization", None)


def test_a_declared_task_no_engine_serves_is_a_503_not_the_callers_error() -> None:
    """The operator declared the task but wired no engine for it: a server-side condition."""
    config = Config(
        device="cpu",
        models={"m": {"model_id": "/none"}},  # type: ignore[dict-item]
        tasks={"video_summarization": {"selected": "m", "options": ["m"]}},  # type: ignore[dict-item]
    )
    pool = EnginePool(config, ModelManager(config))
    with pytest.raises(NoEngineAvailable, match="no engine is configured") as caught:
        pool.select_model("video_summarization", None)
    assert caught.value.status == 503 and caught.value.retry_after
    assert caught.value.details == {"task": "video_summarization", "options": ["m"], "failures": []}
