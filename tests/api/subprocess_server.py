"""`zooserve serve` in a subprocess: for tests where a bug could kill the process (a segfault
in native code must fail the test, not the whole test run)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from zooserve.api.server import free_port


def start(
    config: Path, port: int, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.Popen:
    """Start the server and wait (at most `timeout_s`) until /health answers."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zooserve",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} while starting")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not start")


@contextlib.contextmanager
def running(
    config: Path, env: dict[str, str] | None = None, timeout_s: float = 60
) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base url, process) of a server that is stopped when the block ends."""
    port = free_port()
    process = start(config, port, env, timeout_s)
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
