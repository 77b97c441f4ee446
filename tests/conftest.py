"""Shared fixtures. Tiny random models of the real architectures are built once per session
by `tests/tiny/<family>.py` (each module exposes `build(directory: Path) -> Path`)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

# No request may ever reach a model hub in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class TinyModels:
    """Builds each tiny model at most once per session, on first request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, Path] = {}

    def path(self, family: str) -> Path:
        if family not in self._built:
            builder: Callable[[Path], Path] = importlib.import_module(f"tests.tiny.{family}").build
            self._built[family] = builder(self.root / family)
        return self._built[family]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))
