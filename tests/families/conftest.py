"""Fixtures shared by the family tests (tiny models themselves come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import TinyModels


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; two threads thrash a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sam2_path(tiny_models: TinyModels) -> Path:
    """The tiny SAM2 video model that the sam2, samurai and sam2long families all load."""
    return tiny_models.path("sam2")
