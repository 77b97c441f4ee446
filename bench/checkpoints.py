"""Random-weight checkpoints of the catalog's transformers families, tiny or at base size.

Each checkpoint folder starts as the tiny test build (`tests/tiny/<module>.py`): it holds the
processor, built offline (byte-level tokenizers, location tokens, label maps), which no hub
can supply on a GPU machine either. At `full` size the base architecture (the transformers
config defaults, which are the released checkpoints' sizes, as in bench/loads.py) is saved over
the tiny weights and the image processor is set to the base input size, so frames/s are
measured at the real resolution. A `built.json` marker caches the folder: a rerun measures
at once.

Note: this module imports the tiny builders from `tests/tiny` by module name, in the dry run
and the full run alike. They are the one home of the offline processors (shared with the test
fixtures, per STYLE.md habit 9); copying them here would duplicate ~1,500 lines that two other
efforts are editing. The full run needs only their processors, never their weights.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

MARKER = "built.json"


@dataclass(frozen=True)
class Checkpoint:
    """One family as the GPU check builds it.

    `family` is the zooserve family id; `base` the released base config (None: only the tiny
    build exists, and the full run measures that, saying so); `size` the base image
    processor's fields; `released` names the checkpoint the base config matches.
    """

    family: str
    model_class: str
    tiny_module: str
    released: str
    base: Callable[[], Any] | None = None
    size: dict[str, Any] = field(default_factory=dict)


def _config(name: str, **kwargs: Any) -> Callable[[], Any]:
    return lambda: getattr(transformers, name)(**kwargs)


def _square(side: int) -> dict[str, Any]:
    return {"size": {"height": side, "width": side}}


def _clip_crop(side: int) -> dict[str, Any]:
    return {"size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side}}


CHECKPOINTS: dict[str, Checkpoint] = {
    c.tiny_module: c
    for c in (
        Checkpoint(
            "owlv2",
            "Owlv2ForObjectDetection",
            "owlv2",
            "owlv2-base-patch16 (960 px)",
            _config("Owlv2Config", vision_config={"image_size": 960}),
            _square(960),
        ),
        Checkpoint(
            "grounding_dino",
            "GroundingDinoForObjectDetection",
            "grounding_dino",
            "grounding-dino-tiny (Swin-T + BERT-base, 800 px)",
            _config("GroundingDinoConfig"),
            {"size": {"shortest_edge": 800, "longest_edge": 1333}},
        ),
        Checkpoint(
            "florence2",
            "Florence2ForConditionalGeneration",
            "florence2",
            "tiny only (its tokenizer's special ids are set by the tiny build)",
        ),
        Checkpoint(
            "sam2", "Sam2VideoModel", "sam2", "tiny only (Hiera stages set by the tiny build)"
        ),
        Checkpoint(
            "clip",
            "CLIPModel",
            "clip",
            "clip-vit-base-patch32",
            _config("CLIPConfig"),
            _clip_crop(224),
        ),
        Checkpoint(
            "clip",
            "SiglipModel",
            "siglip",
            "siglip-base-patch16-224",
            _config("SiglipConfig"),
            _square(224),
        ),
        Checkpoint(
            "vit_classifier",
            "ViTForImageClassification",
            "vit_classifier",
            "vit-base-patch16-224",
            _config("ViTConfig", num_labels=1000),
            _square(224),
        ),
        Checkpoint(
            "resnet_classifier",
            "ResNetForImageClassification",
            "resnet_classifier",
            "resnet-50",
            _config("ResNetConfig", num_labels=1000),
            {"size": {"shortest_edge": 224}},
        ),
        Checkpoint(
            "segformer",
            "SegformerForSemanticSegmentation",
            "segformer",
            "segformer-b0 (ADE20k head, 512 px)",
            _config("SegformerConfig", num_labels=150),
            _square(512),
        ),
        Checkpoint(
            "depth_anything",
            "DepthAnythingForDepthEstimation",
            "depth_anything",
            "Depth-Anything-V2-Small (518 px)",
            _config("DepthAnythingConfig"),
            _square(518),
        ),
        Checkpoint(
            "vitpose",
            "VitPoseForPoseEstimation",
            "vitpose",
            "vitpose-base-simple (256x192)",
            _config("VitPoseConfig", num_labels=17),
            {"size": {"height": 256, "width": 192}},
        ),
        Checkpoint(
            "xclip",
            "XCLIPModel",
            "xclip",
            "xclip-base-patch32 (8 frames)",
            _config("XCLIPConfig"),
            _clip_crop(224),
        ),
    )
}


def _processor_file(directory: Path) -> Path | None:
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (directory / name).exists():
            return directory / name
    return None


def _set_input_size(directory: Path, size: dict[str, Any]) -> None:
    """Give the saved image processor the base model's input size."""
    path = _processor_file(directory)
    if path is None or not size:
        return
    document = json.loads(path.read_text())
    processor = document.get("image_processor", document)
    processor.update(size)
    path.write_text(json.dumps(document, indent=2))


def build(name: str, directory: Path, full: bool) -> dict[str, Any]:
    """The checkpoint `name` in `directory` (reused when its marker says the same size), and
    what it is: {"size": "base" | "tiny", "released", "weight_bytes", "build_s"}."""
    marker = directory / MARKER
    wanted = "base" if full and CHECKPOINTS[name].base is not None else "tiny"
    if marker.exists():
        built: dict[str, Any] = json.loads(marker.read_text())
        if built.get("size") == wanted:
            return {**built, "build_s": 0.0}
    started = time.perf_counter()
    checkpoint = CHECKPOINTS[name]
    importlib.import_module(f"tests.tiny.{checkpoint.tiny_module}").build(directory)
    model_class = getattr(transformers, checkpoint.model_class)
    if wanted == "base" and checkpoint.base is not None:
        torch.manual_seed(0)
        model = model_class(checkpoint.base()).eval()
        model.save_pretrained(directory)
        _set_input_size(directory, checkpoint.size)
    else:
        model = model_class.from_pretrained(directory, local_files_only=True)
    tensors = [*model.parameters(), *model.buffers()]
    built = {
        "size": wanted,
        "released": checkpoint.released if wanted == "base" else "tiny test build",
        "weight_bytes": sum(t.numel() * t.element_size() for t in tensors),
    }
    marker.write_text(json.dumps(built))
    return {**built, "build_s": round(time.perf_counter() - started, 2)}


#: Models whose weights ship inside packages (no build), plus OSNet's ONNX export, which the
#: tiny builder writes (no package ships an OSNet): {name: config entry}.
SHIPPED: dict[str, dict[str, Any]] = {
    "mtcnn": {"model_id": "facenet-pytorch:mtcnn", "family": "mtcnn"},
    "rapidocr": {"model_id": "rapidocr:ppocr", "family": "rapidocr", "framework": "onnx"},
    "opencv_hog": {"model_id": "opencv:hog_people", "family": "opencv_hog", "framework": "opencv"},
}


def build_osnet(directory: Path) -> dict[str, Any]:
    """OSNet as ONNX (the architecture at tiny width: the zoo's x0.25 is not offline)."""
    onnx = directory / "osnet_tiny.onnx"
    if not onnx.exists():
        importlib.import_module("tests.tiny.osnet").build(directory)
    return {"model_id": str(onnx), "family": "osnet", "framework": "onnx"}
