"""Run the app under uvicorn: in the foreground (`zooserve serve`) or on a background thread
(demo, benchmark, tests) on a real socket."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from zooserve.api.app import create_app
from zooserve.catalog import Config
from zooserve.manager import ModelManager


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """`with BackgroundServer(config) as server:` serves on `server.url` until the block ends."""

    def __init__(
        self,
        config: Config,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
        manager: ModelManager | None = None,
    ) -> None:
        """`manager`: one built by the caller (its own adapter factory), else the config's."""
        self.host, self.port = host, port or free_port(host)
        app = create_app(config, manager, api_key=api_key)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=self.host,
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=3,  # open event streams must not hold shutdown
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="zooserve-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("zooserve did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
