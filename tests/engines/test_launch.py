"""Managed engines: a real subprocess started, probed, put to sleep, woken, restarted and stopped,
with its memory in the manager's ledger.

SGLang and vLLM are CUDA-only wheels, so the subprocess here is `sleepy_server.py`, which speaks
their lifecycle API (health, vLLM sleep/wake_up, SGLang release/resume memory occupation). The
commands built for real SGLang/vLLM are checked as argv, not run. `transformers serve` is
launched by the same class in tests/api/test_generate_http.py.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from zooserve.api.server import free_port
from zooserve.catalog import Config
from zooserve.catalog.engines import EngineSpec
from zooserve.core.errors import BudgetExceeded
from zooserve.engines.launch import ManagedEngine, build_command
from zooserve.engines.pool import EnginePool
from zooserve.engines.types import ChatMessage, EngineError, GenerationRequest
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import MB


async def release_idle(pool: EnginePool) -> int:
    """A test helper (no caller in the package; the scheduler sleeps an engine itself when a
    load needs its room): every idle managed engine to sleep, lowest priority first; the
    bytes given back to the ledger."""
    freed = 0
    for slot in reversed(pool.slots):
        managed = slot.managed
        if managed is None:
            continue
        before = pool.manager.reservations.get(managed.key, 0)
        if await managed.sleep("memory needed for models"):
            freed += before - pool.manager.reservations.get(managed.key, 0)
    return freed


SCRIPT = str(Path(__file__).with_name("sleepy_server.py"))


def sleepy_spec(kind: str = "vllm", *extra: str, **launch: object) -> EngineSpec:
    port = free_port()
    settings = {
        "command": [sys.executable, SCRIPT, "{port}", *extra],
        "memory_mb": 40,
        "asleep_memory_mb": 5,
        "ready_timeout_s": 15,
        "stop_timeout_s": 5,
        **launch,
    }
    return EngineSpec(
        name="sleepy",
        kind=kind,  # type: ignore[arg-type]
        base_url=f"http://127.0.0.1:{port}/v1",
        models=["m"],
        launch=settings,  # type: ignore[arg-type]
    )


def make_manager(budget_mb: float = 100) -> ModelManager:
    config = Config(device="cpu", memory_budget_mb=budget_mb, models={"m": {"model_id": "/none"}})
    return ModelManager(config)


def launched(spec: EngineSpec, manager: ModelManager | None, clock=None) -> ManagedEngine:
    argv, env = build_command(spec, "/models/m", "m", None)
    if clock is None:
        return ManagedEngine(spec, argv, env, manager)
    return ManagedEngine(spec, argv, env, manager, clock)


def stats(spec: EngineSpec) -> dict[str, object]:
    return httpx.get(f"{spec.root_url}/stats", timeout=5).json()


async def test_start_sleep_wake_stop_with_the_ledger() -> None:
    manager, spec = make_manager(), sleepy_spec()
    engine = launched(spec, manager)
    await engine.start()
    try:
        pid = engine.process.pid  # type: ignore[union-attr]
        assert engine.state == "awake" and manager.reservations["engine:sleepy"] == 40 * MB
        assert engine.argv[-1] == str(httpx.URL(spec.root_url).port)  # {port} expanded
        assert await engine.sleep("test") is True
        assert engine.state == "asleep" and manager.reservations["engine:sleepy"] == 5 * MB
        assert stats(spec) == {"sleeps": 1, "wakes": 0, "asleep": True, "last": "/sleep level=1"}
        async with engine.lease():  # a request wakes it first and re-reserves its memory
            assert stats(spec)["asleep"] is False
            assert manager.reservations["engine:sleepy"] == 40 * MB
            assert await engine.sleep("busy") is False  # never under a request
    finally:
        await engine.stop()
    assert engine.process is None and "engine:sleepy" not in manager.reservations
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    kinds = [e.kind for e in manager.events.recent(20)]
    assert kinds.count("reserve") == 3 and "release" in kinds


async def test_sglang_protocol_and_idle_sleep() -> None:
    now = [0.0]
    manager, spec = make_manager(), sleepy_spec("sglang", asleep_memory_mb=0, sleep_after_idle_s=30)
    engine = launched(spec, manager, clock=lambda: now[0])
    await engine.start()
    try:
        assert await engine.sleep_if_idle() is False
        now[0] = 31.0
        assert await engine.sleep_if_idle() is True
        assert stats(spec)["last"] == "/release_memory_occupation level=-"
        assert "engine:sleepy" not in manager.reservations  # asleep_memory_mb 0: all given back
        async with engine.lease():
            pass
        assert stats(spec)["last"] == "/resume_memory_occupation"
    finally:
        await engine.stop()


async def test_a_dead_process_is_restarted_by_the_next_request() -> None:
    engine = launched(sleepy_spec(), None)
    await engine.start()
    try:
        os.killpg(engine.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        engine.process.wait()  # type: ignore[union-attr]
        async with engine.lease():
            assert engine.state == "awake" and engine.starts == 2
    finally:
        await engine.stop()


async def test_exit_during_start_reports_the_output() -> None:
    manager = make_manager()
    engine = launched(sleepy_spec("vllm", "--exit-at-start", "3"), manager)
    with pytest.raises(EngineError) as caught:
        await engine.start()
    assert "exited with code 3" in caught.value.failure.reason
    assert "no CUDA device" in caught.value.failure.reason
    assert engine.state == "failed" and "engine:sleepy" not in manager.reservations


async def test_never_ready_times_out_and_is_killed() -> None:
    engine = launched(sleepy_spec("vllm", "--never-ready", ready_timeout_s=1), None)
    with pytest.raises(EngineError, match="not ready after 1 s"):
        await engine.start()
    assert engine.process is None and engine.state == "failed"


async def test_an_engine_larger_than_the_budget_is_refused_before_it_starts() -> None:
    engine = launched(sleepy_spec(memory_mb=500), make_manager(budget_mb=100))
    with pytest.raises(BudgetExceeded):
        await engine.start()
    assert engine.process is None


async def test_pool_launches_wakes_for_requests_and_releases_idle_engines() -> None:
    spec = sleepy_spec()
    config = Config(
        device="cpu", memory_budget_mb=100, models={"m": {"model_id": "/none"}}, engines=[spec]
    )
    manager = ModelManager(config)
    pool = EnginePool(config, manager)
    await pool.start(monitor=False)
    request = GenerationRequest(model="m", messages=(ChatMessage("user", "hi"),))
    try:
        assert pool.engine_status()["sleepy"]["state"] == "up"
        assert (await pool.generate(request)).text == "awake and answering"
        assert await release_idle(pool) == 35 * MB
        assert pool.engine_status()["sleepy"]["managed"]["state"] == "asleep"
        # The server refuses while asleep: an answer proves the pool woke it first.
        generation = await pool.generate(request)
        assert generation.engine == "sleepy" and stats(spec)["wakes"] == 1
    finally:
        await pool.close()
    assert "engine:sleepy" not in manager.reservations


def test_commands_for_sglang_and_vllm() -> None:
    base = {"base_url": "http://127.0.0.1:30000", "models": ["m"]}
    sglang = EngineSpec(name="s", kind="sglang", launch={"args": ["--tp", "2"]}, **base)
    argv, env = build_command(sglang, "/w/qwen", "qwen", "4bit")
    assert argv[:3] == [sys.executable, "-m", "sglang.launch_server"]
    joined = " ".join(argv)
    assert "--model-path /w/qwen --served-model-name qwen --host 127.0.0.1 --port 30000" in joined
    assert "--enable-memory-saver" in argv and "--quantization bitsandbytes" in joined
    assert argv[-2:] == ["--tp", "2"] and env == {}

    vllm = EngineSpec(name="v", kind="vllm", launch={}, **base)
    argv, env = build_command(vllm, "/w/llama", "llama", "8bit")
    assert Path(argv[0]).name == "vllm" and argv[1:3] == ["serve", "/w/llama"]
    assert "--enable-sleep-mode" in argv and "--quantization fp8" in " ".join(argv)
    assert env == {"VLLM_SERVER_DEV_MODE": "1"}

    quiet = EngineSpec(name="q", kind="vllm", launch={"sleep_protocol": "none"}, **base)
    argv, env = build_command(quiet, "/w/llama", "llama", None)
    assert "--enable-sleep-mode" not in argv and "--quantization" not in argv and env == {}
    assert quiet.sleep_protocol is None
