"""YOLO-World adapter against a tiny random checkpoint built offline: parity with the hand-run
ultralytics pipeline, output contract, vocabulary cache, memory, unload and the missing extra.

Everything but `test_missing_ultralytics_*` needs ultralytics (AGPL, optional extra): those tests
skip through the `tiny_path` fixture, so the always-run checks still run in CI's default env.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from zooserve.catalog import ModelSpec
from zooserve.errors import InvalidInput, MissingDependency, ModelUnavailable
from zooserve.families import adapter_class
from zooserve.families.yolo_world import INSTALL_HINT, YoloWorldDetector

PROMPTS = ["a person", "a cat"]


def _detector(weights: Path, text_encoder: Path | None) -> YoloWorldDetector:
    options = {"text_encoder": str(text_encoder)} if text_encoder else {}
    spec = ModelSpec(
        name="yolo-world-tiny", model_id=str(weights), family="yolo_world", options=options
    )
    return YoloWorldDetector(spec, source=str(weights), device="cpu")


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    pytest.importorskip("ultralytics")
    return tiny_models.path("yolo_world")


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> YoloWorldDetector:
    det = _detector(tiny_path / "yolo_world.pt", tiny_path / "clip")
    det.load()
    return det


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square (chelsea is 300x451): letterboxing must be undone.
    return [skimage.data.astronaut(), skimage.data.chelsea()]


def _reference(path: Path, images: list[np.ndarray], threshold: float) -> list[dict]:
    """The documented ultralytics flow by hand, its own instances; embeddings from CLIPModel."""
    from transformers import CLIPModel, CLIPTokenizer
    from ultralytics import YOLOWorld

    tokenizer = CLIPTokenizer.from_pretrained(path / "clip", local_files_only=True)
    clip = CLIPModel.from_pretrained(path / "clip", local_files_only=True).eval()
    tokens = tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        feats = clip.get_text_features(**tokens)
        feats = getattr(feats, "pooler_output", feats)
    model = YOLOWorld(str(path / "yolo_world.pt"))
    # What WorldModel.set_classes stores: unit-norm (1, n, 512) features and the head's nc.
    model.model.txt_feats = torch.nn.functional.normalize(feats, dim=-1).reshape(1, 2, -1)
    model.model.model[-1].nc = len(PROMPTS)
    model.model.names = PROMPTS
    bgr = [image[..., ::-1].copy() for image in images]  # ultralytics reads numpy as BGR
    results = model.predict(bgr, conf=threshold, device="cpu", verbose=False)
    return [
        {
            "boxes": r.boxes.xyxy.numpy(),
            "scores": r.boxes.conf.numpy(),
            "labels": r.boxes.cls.numpy().astype(int).tolist(),
        }
        for r in results
    ]


def test_registry_resolves_family() -> None:
    assert adapter_class("yolo_world") is YoloWorldDetector
    assert YoloWorldDetector.family == "yolo_world"
    assert YoloWorldDetector.kind == "detector"


def test_missing_ultralytics_raises_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # `import ultralytics` now fails
    det = _detector(tmp_path / "yolov8s-worldv2.pt", None)
    with pytest.raises(MissingDependency) as info:
        det.load()
    assert info.value.status == 501
    assert info.value.message == INSTALL_HINT
    assert "pip install 'zooserve[ultralytics]'" in INSTALL_HINT and "AGPL-3.0" in INSTALL_HINT


def test_module_does_not_import_ultralytics() -> None:
    source = Path(sys.modules[YoloWorldDetector.__module__].__file__ or "").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert not any("ultralytics" in line for line in top_level)


@pytest.mark.parametrize("threshold", [0.0, 3e-5])
def test_parity_with_ultralytics_pipeline(
    detector: YoloWorldDetector, tiny_path: Path, images: list[np.ndarray], threshold: float
) -> None:
    got = detector.detect(images, PROMPTS, threshold=threshold)
    expected = _reference(tiny_path, images, threshold)
    assert len(got) == len(expected) == len(images)
    assert sum(len(d) for d in got) > 0, "random model produced no boxes; lower the threshold"
    for det, ref in zip(got, expected, strict=True):
        assert len(det) == len(ref["scores"])
        assert det.confidence is not None and det.class_id is not None
        np.testing.assert_allclose(det.xyxy, ref["boxes"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(det.confidence, ref["scores"], atol=1e-6, rtol=1e-4)
        assert list(det.data["class_name"]) == [PROMPTS[i] for i in ref["labels"]]
        assert list(det.class_id) == ref["labels"]


def test_rgb_input_is_flipped_to_bgr(detector: YoloWorldDetector) -> None:
    image = skimage.data.astronaut()
    batch = detector.preprocess([image], PROMPTS)
    np.testing.assert_array_equal(batch.frames[0], image[..., ::-1])


def test_output_contract(detector: YoloWorldDetector, images: list[np.ndarray]) -> None:
    results = detector.detect(images, PROMPTS, threshold=0.0)
    for det, image in zip(results, images, strict=True):
        height, width = image.shape[:2]
        assert det.xyxy.dtype == np.float32
        assert det.xyxy.ndim == 2 and det.xyxy.shape[1] == 4
        assert len(det) > 0
        assert (det.xyxy[:, [0, 2]] >= 0).all() and (det.xyxy[:, [0, 2]] <= width).all()
        assert (det.xyxy[:, [1, 3]] >= 0).all() and (det.xyxy[:, [1, 3]] <= height).all()
        assert (det.xyxy[:, 2] >= det.xyxy[:, 0]).all() and (det.xyxy[:, 3] >= det.xyxy[:, 1]).all()
        assert set(det.data["class_name"]) <= set(PROMPTS)
        assert det.confidence is not None and det.confidence.shape == (len(det),)


def test_threshold_filters(detector: YoloWorldDetector, images: list[np.ndarray]) -> None:
    everything = detector.detect(images, PROMPTS, threshold=0.0)
    scores = np.concatenate([np.asarray(d.confidence) for d in everything])
    cut = float(np.median(scores))
    kept = detector.detect(images, PROMPTS, threshold=cut)
    assert sum(len(d) for d in kept) == int((scores > cut).sum())
    assert all(bool(np.all(np.asarray(d.confidence) > cut)) for d in kept)


def test_vocabulary_cached_until_prompts_change(
    detector: YoloWorldDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    encode = detector._encode

    def spy(prompts: list[str]) -> torch.Tensor:
        calls.append(prompts)
        return encode(prompts)

    monkeypatch.setattr(detector, "_encode", spy)
    image = [skimage.data.chelsea()]
    detector.detect(image, ["a dog"], threshold=0.0)
    detector.detect(image, ["a dog"], threshold=0.0)
    assert calls == [["a dog"]]
    (det,) = detector.detect(image, ["a cat", "a dog", "a hat"], threshold=0.0)
    assert calls == [["a dog"], ["a cat", "a dog", "a hat"]]
    assert detector.model.model.model[-1].nc == 3
    assert set(det.data["class_name"]) <= {"a cat", "a dog", "a hat"}


@pytest.mark.parametrize("prompts", [None, []])
def test_missing_prompts_rejected(
    detector: YoloWorldDetector, images: list[np.ndarray], prompts: list[str] | None
) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(images, prompts, threshold=0.0)


def test_non_rgb_image_rejected(detector: YoloWorldDetector) -> None:
    with pytest.raises(InvalidInput):
        detector.detect([np.zeros((10, 10), dtype=np.uint8)], PROMPTS, threshold=0.0)


def test_empty_batch(detector: YoloWorldDetector) -> None:
    assert detector.detect([], PROMPTS, threshold=0.0) == []


def test_warmup_runs(detector: YoloWorldDetector) -> None:
    detector.warmup()


def test_memory_bytes_counts_model_and_text_encoder(detector: YoloWorldDetector) -> None:
    modules = detector.torch_modules()
    assert modules[0] is detector.model.model and modules[1] is detector.text_encoder
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    assert detector.memory_bytes() == sum(t.numel() * t.element_size() for t in tensors) > 0


@pytest.mark.skipif(importlib.util.find_spec("clip") is not None, reason="clip is installed")
def test_without_text_encoder_needs_clip(tiny_path: Path) -> None:
    det = _detector(tiny_path / "yolo_world.pt", None)
    det.load()
    with pytest.raises(MissingDependency, match="text_encoder"):
        det.detect([skimage.data.chelsea()], PROMPTS, threshold=0.0)


def test_unload_frees_model(tiny_path: Path) -> None:
    det = _detector(tiny_path / "yolo_world.pt", tiny_path / "clip")
    det.load()
    det.detect([skimage.data.chelsea()], PROMPTS, threshold=0.0)
    model_ref = weakref.ref(det.model.model)
    encoder_ref = weakref.ref(det.text_encoder)
    det.unload()
    gc.collect()
    assert model_ref() is None and encoder_ref() is None
    assert det.model is None and det.text_encoder is None
    assert det.memory_bytes() == 0
    det.load()  # a reloaded adapter works again
    assert len(det.detect([skimage.data.chelsea()], PROMPTS, threshold=0.0)) == 1


def test_missing_checkpoint_is_unavailable(tmp_path: Path, tiny_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        _detector(tmp_path / "yolov8s-worldv2.pt", None).load()


def test_corrupt_weights_raise(tmp_path: Path, tiny_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(Exception):  # noqa: B017 - any loader error, as long as it raises
        _detector(broken, None).load()
