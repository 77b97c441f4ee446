"""A real zooserve (uvicorn on 127.0.0.1) over the shared test config (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config


@pytest.fixture(scope="package")
def server(zoo_config: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(load_config(zoo_config)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http
