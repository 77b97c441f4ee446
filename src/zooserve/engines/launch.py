"""Engines zooserve runs itself: `python -m sglang.launch_server ...` or `vllm serve ...` (or any
command serving an OpenAI-compatible API) as a subprocess.

Lifecycle: reserve the engine's memory in the manager's ledger (evicting idle models), start the
process in its own session, wait until GET /health answers, serve; when idle (or when the budget
needs room, `sleep()`), release the GPU memory through the engine's own API instead of killing
it (vLLM `/sleep` `/wake_up`, SGLang `/release_memory_occupation` `/resume_memory_occupation`)
and shrink the reservation; wake it before the next request; stop the whole process group on
shutdown. A process that died is started again by the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from zooserve.catalog.engines import EngineSpec
from zooserve.core.redaction import (
    redact_argv,
    redact_text,
    register_secrets,
    secret_values,
)
from zooserve.engines.types import EngineError, EngineFailure
from zooserve.manager import ModelManager, Reclaim
from zooserve.runtimes.memory import MB

log = logging.getLogger("zooserve.engines.launch")
QUANTIZATION_ARGS = {
    # in-flight bitsandbytes 4-bit; 8-bit as dynamic FP8 (bnb 8-bit is not served by either)
    "4bit": ["--quantization", "bitsandbytes"],
    "8bit": ["--quantization", "fp8"],
}
SLEEP_ENDPOINTS = {
    "vllm": ("/sleep", "/wake_up"),
    "sglang": ("/release_memory_occupation", "/resume_memory_occupation"),
}


def build_command(
    spec: EngineSpec, model_path: str, served_name: str, quantization: str | None
) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that start this engine (one model)."""
    assert spec.launch is not None
    url = urlsplit(spec.root_url)
    host, port = url.hostname or "127.0.0.1", str(url.port or 80)
    env = dict(spec.launch.env)
    if spec.launch.command:
        values = {"host": host, "port": port, "model_path": model_path}
        values["served_model_name"] = served_name
        argv = [_expand(part, values) for part in spec.launch.command]
    elif spec.kind == "sglang":
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", model_path]
        argv += ["--served-model-name", served_name, "--host", host, "--port", port]
        if spec.sleep_protocol == "sglang":
            argv.append("--enable-memory-saver")
    else:
        sibling = Path(sys.executable).with_name("vllm")
        argv = [str(sibling) if sibling.exists() else "vllm", "serve", model_path]
        argv += ["--served-model-name", served_name, "--host", host, "--port", port]
        if spec.sleep_protocol == "vllm":
            argv.append("--enable-sleep-mode")
            env.setdefault("VLLM_SERVER_DEV_MODE", "1")  # the sleep endpoints are dev-mode only
    if quantization and not spec.launch.command:
        argv += QUANTIZATION_ARGS[quantization]
    return argv + list(spec.launch.args), env


def _expand(part: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        part = part.replace("{" + key + "}", value)
    return part


class ManagedEngine:
    """One engine subprocess, its readiness, sleep state and ledger reservation."""

    def __init__(
        self,
        spec: EngineSpec,
        argv: list[str],
        env: dict[str, str],
        ledger: ModelManager | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert spec.launch is not None
        self.spec, self.launch = spec, spec.launch
        self.argv, self.env, self.ledger, self.clock = argv, env, ledger, clock
        self.key = f"engine:{spec.name}"
        #: What its argv, env and errors must never show (the process may echo its argv).
        self.secrets = spec.secrets() | secret_values(argv, env)
        register_secrets(self.secrets)
        self.state = "stopped"  # stopped | starting | awake | asleep | failed
        self.process: subprocess.Popen[bytes] | None = None
        self.output: deque[str] = deque(maxlen=60)
        self.in_flight = 0
        self.last_used = clock()
        self.last_error: str | None = None
        self.starts = 0
        self._lock = asyncio.Lock()
        self._reader: threading.Thread | None = None

    def _fail(self, reason: str) -> EngineError:
        reason = redact_text(reason, self.secrets)
        self.last_error = reason
        return EngineError(EngineFailure(self.spec.name, reason))

    async def start(self) -> None:
        async with self._lock:
            await self._start()

    async def stop(self) -> None:
        async with self._lock:
            await self._terminate()
            self.state = "stopped"

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        """Hold the engine awake (started, woken) for one request."""
        async with self._lock:
            if self.process is None or self.process.poll() is not None:
                await self._start()
            elif self.state == "asleep":
                await self._wake()
            self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_used = self.clock()

    async def sleep(self, reason: str) -> bool:
        """Release the engine's GPU memory if it is awake, idle and able to; True if it slept."""
        protocol = self.spec.sleep_protocol
        async with self._lock:
            if self.state != "awake" or self.in_flight or protocol is None:
                return False
            path = SLEEP_ENDPOINTS[protocol][0]
            params = {"level": self.launch.sleep_level} if protocol == "vllm" else None
            await self._post(path, params)
            self.state = "asleep"
            await self._account(self.launch.asleep_memory_mb, f"engine asleep ({reason})")
            log.info("engine %s asleep: %s", self.spec.name, reason)
            return True

    async def sleep_if_idle(self) -> bool:
        after = self.launch.sleep_after_idle_s
        if after is None or self.in_flight or self.clock() - self.last_used < after:
            return False
        return await self.sleep(f"idle for {after:g} s")

    # --- internals (called with the lock held) ----------------------------------------------

    async def _start(self) -> None:
        await self._terminate()  # a dead process leaves its reservation and group behind
        await self._account(self.launch.memory_mb, "engine launch")
        self.state, self.starts = "starting", self.starts + 1
        log.info(
            "starting engine %s: %s",
            self.spec.name,
            " ".join(redact_argv(self.argv, self.secrets)),
        )
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                # Its own process group: stop() takes its workers too. (No preexec_fn to tie
                # it to our life: unsafe in a threaded process. A SIGKILLed zooserve leaves
                # the engine running; shutdown and SIGTERM stop it.)
                start_new_session=True,
            )
        except OSError as exc:
            self.state = "failed"
            self._release()
            raise self._fail(f"could not start {self.argv[0]!r}: {exc}") from exc
        self._reader = threading.Thread(target=self._drain, args=(self.process,), daemon=True)
        self._reader.start()
        await self._wait_ready()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        """Keep the pipe from filling up; the last lines explain a failed start."""
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            log.debug("[%s] %s", self.spec.name, line)

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = self.clock() + self.launch.ready_timeout_s
        async with httpx.AsyncClient(base_url=self.spec.root_url, timeout=2.0) as http:
            while True:
                code = self.process.poll()
                if code is not None:
                    if self._reader is not None:  # its last words explain the exit
                        await asyncio.to_thread(self._reader.join, 2.0)
                    await self._terminate()
                    self.state = "failed"
                    tail = " | ".join(list(self.output)[-5:])
                    raise self._fail(f"exited with code {code} while starting: {tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/health")).status_code == 200:
                        self.state, self.last_used = "awake", self.clock()
                        log.info("engine %s ready (pid %d)", self.spec.name, self.process.pid)
                        return
                if self.clock() > deadline:
                    await self._terminate()
                    self.state = "failed"
                    raise self._fail(f"not ready after {self.launch.ready_timeout_s:g} s")
                await asyncio.sleep(0.25)

    async def _wake(self) -> None:
        protocol = self.spec.sleep_protocol
        assert protocol is not None
        await self._account(self.launch.memory_mb, "engine wake-up")
        await self._post(SLEEP_ENDPOINTS[protocol][1], None)
        self.state = "awake"
        log.info("engine %s awake", self.spec.name)

    async def _post(self, path: str, params: dict[str, Any] | None) -> None:
        try:
            async with httpx.AsyncClient(base_url=self.spec.root_url, timeout=60.0) as http:
                response = await http.post(path, params=params, json={})
        except httpx.HTTPError as exc:
            raise self._fail(f"POST {path} failed: {exc}") from exc
        if response.status_code >= 300:
            raise self._fail(f"POST {path} -> HTTP {response.status_code}: {response.text[:200]}")

    async def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, self.launch.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait)
        self._release()

    async def _account(self, megabytes: float, reason: str) -> None:
        """Claim the engine's memory. Awake and able to sleep, the claim is sleepable: the
        scheduler puts the idle engine to sleep to make room for models."""
        if self.ledger is None:
            return
        if megabytes <= 0:
            self.ledger.release(self.key, reason)
            return
        asleep = int(self.launch.asleep_memory_mb * MB)
        sleepable = self.spec.sleep_protocol is not None and int(megabytes * MB) > asleep
        await self.ledger.reserve(
            self.key,
            int(megabytes * MB),
            reason,
            reclaim=Reclaim.SLEEP if sleepable else Reclaim.NEVER,
            sleeper=self._sleep_for_room if sleepable else None,
            busy=lambda: self.in_flight > 0 or self._lock.locked() or self.state != "awake",
            floor=asleep if sleepable else 0,
        )

    async def _sleep_for_room(self) -> None:
        if not await self.sleep("memory needed for models"):
            raise EngineError(EngineFailure(self.spec.name, "busy: could not sleep"))

    def _release(self) -> None:
        if self.ledger is not None:
            self.ledger.release(self.key, "engine stopped")

    def status(self) -> dict[str, Any]:
        reserved = self.ledger.reservations.get(self.key, 0) if self.ledger else 0
        process = self.process
        return {
            "state": self.state,
            "pid": process.pid if process is not None and process.poll() is None else None,
            "command": redact_argv(self.argv, self.secrets),
            "starts": self.starts,
            "in_flight": self.in_flight,
            "idle_seconds": round(self.clock() - self.last_used, 3),
            "reserved_mb": reserved / MB,
            "sleep_protocol": self.spec.sleep_protocol,
            "last_error": self.last_error,  # redacted by _fail
        }
