"""The enrichment pipeline over real images (skimage's astronaut and chelsea, a bikes.mp4 frame)
with caller-given detections, and real zoo models: MTCNN's, RapidOCR's (PP-OCR) and BRISQUE's
shipped weights, and tiny random models of the real architectures (OWLv2, ViT, ResNet, CLIP, OSNet,
SegFormer, ViTPose, Depth Anything, X-CLIP) loaded through the real manager and families."""

from __future__ import annotations

import gc
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import supervision as sv

from tests.conftest import TinyModels
from tests.tiny.resnet_classifier import VEHICLES
from tests.tiny.vit_classifier import WEATHER
from zooserve.catalog import Config
from zooserve.families import adapter_class
from zooserve.families.base import make_detections
from zooserve.manager import ModelManager
from zooserve.media import Frame, MediaSource
from zooserve.media.samples import sample_files
from zooserve.pipelines.enrich import EnrichResult, enrich_frames
from zooserve.pipelines.enrich_detections import ENRICHMENTS, PARENT, SOURCE
from zooserve.pipelines.posture import POSTURES

ACTIONS = ["riding a bike", "walking a cat"]


def detections(*items: tuple[str, tuple[float, float, float, float]]) -> sv.Detections:
    labels = [label for label, _ in items]
    return make_detections(
        np.array([box for _, box in items], dtype=np.float32),
        np.full(len(items), 0.9, dtype=np.float32),
        labels,
        sorted(set(labels)),
    )


@pytest.fixture(scope="module", autouse=True)
def frozen_heap() -> Iterator[None]:
    """Every unload runs gc.collect(), which scans the whole heap: ~1.5 s a call here once
    transformers is imported. Freezing what exists before these tests (imports, other tests'
    objects) leaves only their own objects to scan; the models they load are still collected
    and verified by the manager."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="module")
def batch() -> tuple[list[Frame], dict[int, sv.Detections]]:
    """A person (astronaut), a car and two persons (bikes.mp4 frame 120), a cat (chelsea)."""
    with MediaSource.open(sample_files()["bikes.mp4"]) as video:
        (street,) = video.read([120])
    frames = [
        Frame(0, 0.0, skimage.data.astronaut()),
        Frame(1, 1.0, street.image),
        Frame(2, 2.0, skimage.data.chelsea()),
    ]
    given = {
        0: detections(("person", (130, 0, 470, 512))),
        1: detections(
            ("car", (0, 30, 300, 272)),
            ("person", (340, 5, 500, 272)),  # the cyclist
            ("person", (450, 40, 492, 150)),  # a passer-by behind him
        ),
        2: detections(("cat", (60, 20, 420, 300))),
    }
    return frames, given


def model_entries(tiny: TinyModels) -> dict[str, dict[str, Any]]:
    def local(family: str, builder: str | None = None) -> dict[str, Any]:
        return {"model_id": str(tiny.path(builder or family)), "family": family}

    return {
        "face": {"model_id": "facenet-pytorch:mtcnn", "family": "mtcnn"},  # shipped weights
        "age": local("vit_classifier"),
        "plate-owl": local("owlv2"),
        "ocr": {"model_id": "rapidocr:ppocr", "family": "rapidocr", "framework": "onnx"},
        "pets": local("resnet_classifier"),
        "violence": local("vit_classifier"),
        "weather": local("vit_classifier"),
        "brisque": {"model_id": "builtin:brisque", "family": "brisque", "framework": "opencv"},
        "clothes": local("segformer"),
        "pose": local("vitpose"),
        "osnet": {
            "model_id": str(tiny.path("osnet") / "osnet_tiny.onnx"),
            "family": "osnet",
            "framework": "onnx",
        },
        "clip": local("clip"),
        "depth": local("depth_anything"),
        "action": local("xclip"),
        "dogs": local("vit_classifier"),
    }


SEED_TRIGGERS: list[dict[str, Any]] = [
    {"name": "faces", "model": "face", "when": {"classes": ["person"]}, "max_detections": 1},
    {"name": "age", "model": "age", "source": "faces"},
    {
        "name": "plates",
        "model": "plate-owl",
        "when": {"classes": ["car", "truck", "bus", "motorcycle"]},
        "labels": ["a license plate"],
        "threshold": 0.0,
        "max_detections": 1,
    },
    {"name": "plate_text", "model": "ocr", "source": "plates"},
    {"name": "pet", "model": "pets", "when": {"classes": ["cat", "dog"]}},
    {
        "name": "violence",
        "model": "violence",
        "scope": "frame",
        "when": {"classes": ["person"], "min_count": 2},
    },
    {"name": "weather", "model": "weather", "scope": "batch"},
    {"name": "quality", "model": "brisque", "scope": "batch"},
    {"name": "clothing", "model": "clothes", "when": {"classes": ["person"]}},
    {"name": "pose", "model": "pose", "when": {"classes": ["person"]}, "crop_padding": 0},
    {"name": "reid", "model": "osnet", "when": {"classes": ["person"]}},
    {
        "name": "fashion",
        "model": "clip",
        "when": {"classes": ["person"]},
        "labels": ["a coat", "a dress"],
    },
    {"name": "depth", "model": "depth"},
    {"name": "action", "model": "action", "scope": "clip", "labels": ACTIONS},
    {"name": "dog_breed", "model": "dogs", "when": {"classes": ["dog"]}},
]


def make_config(
    tmp_path: Path, models: dict[str, Any], triggers: list[dict[str, Any]], budget_mb: float
) -> Config:
    return Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": budget_mb,
            "admission_timeout_s": 1,
            "models": models,
            "zoo": {"triggers": triggers},
            "base_dir": tmp_path,
        }
    )


@pytest.fixture
async def seed_manager(tmp_path: Path, tiny_models: TinyModels) -> AsyncIterator[ModelManager]:
    manager = ModelManager(make_config(tmp_path, model_entries(tiny_models), SEED_TRIGGERS, 500))
    yield manager
    await manager.close()


def rows(detections: sv.Detections) -> list[dict[str, Any]]:
    """Each detection's enrichments (output name -> value), row by row."""
    return list(detections.data[ENRICHMENTS])


def row_of(result: EnrichResult, frame: int, label: str) -> list[int]:
    """The rows of a frame's primary detections with this label."""
    names = result.frames[frame].detections.data["class_name"]
    return [row for row, name in enumerate(names) if name == label]


def by_label(result: EnrichResult, frame: int, label: str) -> list[dict[str, Any]]:
    """The enrichments of a frame's primary detections with this label."""
    primary = rows(result.frames[frame].detections)
    return [primary[row] for row in row_of(result, frame, label)]


async def test_a_batch_runs_each_needed_model_once_in_dependency_order(
    seed_manager: ModelManager, batch: tuple[list[Frame], dict[int, sv.Detections]]
) -> None:
    frames, given = batch
    result = await enrich_frames(seed_manager, frames, given)

    assert result.errors == []
    # Model-major: one lease per model, a chain's stage right after its source's; the dog
    # classifier has nothing to do (no dog), so it is never loaded.
    assert [(load.model, load.stages) for load in result.loads] == [
        ("face", ["faces"]),
        ("age", ["age"]),
        ("plate-owl", ["plates"]),
        ("ocr", ["plate_text"]),
        ("pets", ["pet"]),
        ("violence", ["violence"]),
        ("weather", ["weather"]),
        ("brisque", ["quality"]),
        ("clothes", ["clothing"]),
        ("pose", ["pose"]),
        ("osnet", ["reid"]),
        ("clip", ["fashion"]),
        ("depth", ["depth"]),
        ("action", ["action"]),
    ]
    assert all(load.loaded for load in result.loads)
    assert {s.name: s.status for s in result.stages}["dog_breed"] == "not_triggered"
    assert seed_manager.state("dogs").load_count == 0

    # person -> face (MTCNN's real weights find the astronaut's face) -> age on the face crop
    (astronaut,) = by_label(result, 0, "person")
    faces = astronaut["faces"]  # sv.Detections whose rows point back to the astronaut's row
    assert len(faces) == 1 and faces.data[SOURCE][0] == "faces"
    assert faces.data[PARENT].tolist() == row_of(result, 0, "person")
    x1, y1, x2, y2 = faces.xyxy[0]  # in frame pixels, not crop pixels
    assert 170 < x1 < x2 < 280 and 50 < y1 < y2 < 190
    assert rows(faces)[0]["age"]["label"] in WEATHER  # the tiny ViT's classes

    # car -> one plate (max_detections) inside the car's padded crop -> OCR on the plate crop
    (car,) = by_label(result, 1, "car")
    (plate,) = rows(car["plates"])
    (box,) = car["plates"].xyxy
    # inside the padded crop (x 0..330, y 6..272); a random box of zero width is widened to 1 px
    assert 0 <= box[0] < box[2] <= 331 and 6 <= box[1] < box[3] <= 272
    assert set(plate["plate_text"]) == {"text", "score", "lines", "coordinates"}

    (cat,) = by_label(result, 2, "cat")
    assert cat["pet"]["label"] in VEHICLES  # the tiny ResNet's classes
    assert "faces" not in cat and "pose" not in cat

    # >= 2 persons only in frame 1; weather on every frame and once for the batch
    assert ["violence" in f.enrichments for f in result.frames] == [False, True, False]
    assert all(f.enrichments["weather"]["label"] in WEATHER for f in result.frames)
    assert result.batch["weather"]["frames"] == 3
    assert result.batch["weather"]["label"] in WEATHER
    assert all(0 <= f.enrichments["quality"]["score"] <= 100 for f in result.frames)
    scores = [f.enrichments["quality"]["score"] for f in result.frames]
    assert result.batch["quality"]["score"] == pytest.approx(np.mean(scores))
    assert set(result.batch["quality"]["flagged_fraction"]) >= {"blur"}
    assert result.clip["action"]["label"] in ACTIONS

    persons = by_label(result, 0, "person") + by_label(result, 1, "person")
    for person in persons:
        keypoints = np.array(person["pose"]["keypoints"])
        assert keypoints.shape == (17, 3)
        assert person["pose"]["posture"] in POSTURES
        clothing = person["clothing"]
        assert 0.5 < sum(clothing["fractions"].values()) <= 1.0 + 1e-6
        assert clothing["dominant"] is None or clothing["dominant"] in clothing["fractions"]
        assert person["reid"]["dim"] > 0 and "vector" not in person["reid"]
        assert person["fashion"]["label"] in {"a coat", "a dress"}
    for frame in result.frames:
        for detection in rows(frame.detections):
            assert 0.0 <= detection["depth"]["relative_distance"] <= 1.0


@pytest.fixture
def one_model_models(tiny_models: TinyModels) -> dict[str, Any]:
    entries = model_entries(tiny_models)
    return {name: entries[name] for name in ("plate-owl", "clip", "depth")}


ONE_MODEL_TRIGGERS: list[dict[str, Any]] = [
    {
        "name": "plates",
        "model": "plate-owl",
        "when": {"classes": ["car"]},
        "labels": ["a license plate"],
        "threshold": 0.0,
        "max_detections": 1,
    },
    {"name": "plate_colour", "model": "clip", "source": "plates", "labels": ["white", "yellow"]},
    {"name": "fashion", "model": "clip", "when": {"classes": ["person"]}, "labels": ["a coat"]},
    {"name": "depth", "model": "depth"},
]


def estimated_sizes(models: dict[str, Any]) -> dict[str, int]:
    """What the manager admits a model by before its first load (weight-file bytes)."""
    sizes = {}
    for name, entry in models.items():
        estimate = adapter_class(entry["family"]).estimate_bytes(entry["model_id"], "cpu")
        assert estimate, name
        sizes[name] = estimate
    return sizes


def summary(result: EnrichResult) -> list[Any]:
    """What the enrichments say, for comparing two runs (scores may differ in the last bits
    between batched and single-image inference)."""
    out = []
    for frame in result.frames:
        names = frame.detections.data["class_name"]
        for label, d in zip(names, rows(frame.detections), strict=True):
            plates = d.get("plates")
            found = [] if plates is None else rows(plates)
            out.append(
                (
                    label,
                    round(d["depth"]["relative_distance"], 2),
                    d.get("fashion", {}).get("label"),
                    [] if plates is None else [np.round(b, 1).tolist() for b in plates.xyxy],
                    [p["plate_colour"]["label"] for p in found],
                )
            )
    return out


async def test_model_major_loads_each_model_once_where_naive_order_reloads(
    tmp_path: Path,
    one_model_models: dict[str, Any],
    batch: tuple[list[Frame], dict[int, sv.Detections]],
) -> None:
    frames, given = batch
    frames, given = frames[1:], {n: d for n, d in given.items() if n > 0}  # car, 2 persons, cat
    sizes = estimated_sizes(one_model_models)  # the measured sizes are a little smaller
    budget = max(sizes.values()) * 1.02
    pairs = [a + b for x, a in sizes.items() for y, b in sizes.items() if x < y]
    assert min(pairs) > budget * 1.05, f"these tiny models no longer fit one at a time: {sizes}"
    config = make_config(tmp_path, one_model_models, ONE_MODEL_TRIGGERS, budget / 2**20)

    results = {}
    for order in ("model_major", "per_detection"):
        manager = ModelManager(config)
        try:
            results[order] = await enrich_frames(manager, frames, given, order=order)
        finally:
            await manager.close()
    major, naive = results["model_major"], results["per_detection"]
    assert major.errors == naive.errors == []

    loaded = [load.model for load in major.loads if load.loaded]
    assert loaded == ["plate-owl", "clip", "depth"]  # = the distinct models needed
    assert [load.evicted for load in major.loads] == [[], ["plate-owl"], ["clip"]]
    # Per detection: car (owl, clip, depth), each person (clip, depth), cat (depth: loaded).
    naive_loaded = [load.model for load in naive.loads if load.loaded]
    assert naive_loaded == ["plate-owl", "clip", "depth", "clip", "depth", "clip", "depth"]
    assert summary(major) == summary(naive)


@pytest.fixture
def broken_owl(tmp_path: Path, tiny_models: TinyModels) -> Path:
    broken = tmp_path / "broken-owl"
    shutil.copytree(tiny_models.path("owlv2"), broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    return broken


async def test_failures_are_reported_and_dependants_skipped(
    tmp_path: Path,
    tiny_models: TinyModels,
    broken_owl: Path,
    batch: tuple[list[Frame], dict[int, sv.Detections]],
) -> None:
    frames, given = batch
    entries = model_entries(tiny_models)
    models = {
        "broken": {"model_id": str(broken_owl), "family": "owlv2"},
        "hub-weather": {"model_id": "example/not-downloaded", "family": "vit_classifier"},
        "ocr": entries["ocr"],
        "age": entries["age"],
        "pose": entries["pose"],
        "depth": entries["depth"],
    }
    triggers = [
        {"name": "plates", "model": "broken", "when": {"classes": ["car"]}, "labels": ["plate"]},
        {"name": "plate_text", "model": "ocr", "source": "plates"},
        {"name": "weather", "model": "hub-weather", "scope": "batch"},
        # a fixed-class classifier asked for labels it does not have: fails at inference
        {"name": "mood", "model": "age", "when": {"classes": ["cat"]}, "labels": ["grumpy"]},
        # a classifier cannot feed a chain (it finds no detections)
        {"name": "breed", "model": "age", "when": {"classes": ["person"]}},
        {"name": "breed_depth", "model": "depth", "source": "breed"},
        {"name": "crowd_pose", "model": "pose", "scope": "frame"},  # pose needs person boxes
        {"name": "depth", "model": "depth"},
    ]
    manager = ModelManager(make_config(tmp_path, models, triggers, 500))
    try:
        result = await enrich_frames(manager, frames, given)
    finally:
        await manager.close()

    errors = {e.stage: (e.model, e.code) for e in result.errors}
    assert errors == {
        "plates": ("broken", "model_load_failed"),
        "plate_text": ("ocr", "dependency_failed"),
        "weather": ("hub-weather", "model_unavailable"),
        "mood": ("age", "invalid_input"),
        "breed_depth": ("depth", "invalid_trigger"),
        "crowd_pose": ("pose", "invalid_trigger"),
    }
    messages = {e.stage: e.message for e in result.errors}
    assert "'plates' failed" in messages["plate_text"]
    status = {s.name: s.status for s in result.stages}
    assert status["plate_text"] == "skipped" and status["breed"] == "ok"
    assert "ocr" not in [load.model for load in result.loads]  # a skipped stage leases nothing
    assert [load.failed for load in result.loads if load.model == "broken"] == [True]
    # the rest of the batch is still enriched
    assert all("depth" in d for f in result.frames for d in rows(f.detections))
    (car,) = by_label(result, 1, "car")
    assert "plates" not in car
