"""Shared fixtures. Tiny random models of the real architectures are built once per session
by `tests/tiny/<family>.py` (each module exposes `build(directory: Path) -> Path`)."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from tests.videos import encode_video

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


# --- media and a config over tiny models, shared by the HTTP and browser tests ------------

VIDEO_FRAMES = 30


def scene(i: int) -> np.ndarray:
    """The astronaut sliding right by 2 px a frame: a real person in every frame."""
    image = skimage.data.astronaut()[::4, ::4]  # 128x128
    canvas = np.zeros((128, 192, 3), np.uint8)
    canvas[:, i * 2 : i * 2 + 128] = image
    return canvas


@pytest.fixture(scope="session")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    encode_video(root / "walk.mp4", (scene(i) for i in range(VIDEO_FRAMES)))
    Image.fromarray(skimage.data.astronaut()).save(root / "astronaut.png")
    (root / "notes.mp4").write_text("this is not a video")
    return root


@pytest.fixture(scope="session")
def zoo_config(
    tmp_path_factory: pytest.TempPathFactory, media_root: Path, tiny_models: TinyModels
) -> Path:
    root = tmp_path_factory.mktemp("config")
    broken = root / "broken-owlv2"
    shutil.copytree(tiny_models.path("owlv2"), broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    config = {
        "device": "cpu",
        "memory_budget_mb": 0.9,  # fits tiny OWLv2 (0.32 MB) or Grounding DINO (0.75 MB), not both
        "media_root": str(media_root),
        "admission_timeout_s": 2,
        "default_prompts": ["a person", "a cat"],
        "tasks": {"object_detection": {"selected": "owl", "options": ["owl", "gdino", "hub-owl"]}},
        "models": {
            "owl": {"model_id": str(tiny_models.path("owlv2"))},  # family inferred from config.json
            "gdino": {
                "model_id": str(tiny_models.path("grounding_dino")),
                "family": "grounding_dino",
            },
            "broken": {"model_id": str(broken), "family": "owlv2"},
            "hub-owl": {"model_id": "google/owlv2-base-patch16-ensemble", "family": "owlv2"},
            "face": {
                "model_id": "opencv:haarcascade_frontalface_default.xml",
                "family": "opencv_cascade",
                "framework": "opencv",
                "options": {"label": "face"},
            },
        },
    }
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
