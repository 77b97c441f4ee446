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
from tracker_configs import (
    SAM2_PROCESSOR,
    SAM2_SIZE,
    SAM3_PROCESSOR,
    SAM3_SIZE,
    edgetam_base,
    sam3_base,
    sam21_small,
)

MARKER = "built.json"


@dataclass(frozen=True)
class Checkpoint:
    """One family as the GPU check builds it.

    `family` is the zooserve family id; `base` builds the released base config from the tiny
    build's (None: only the tiny build exists, and the full run measures that, saying so);
    `size` the base image processor's fields and `processor` the rest of the processor's;
    `released` names the checkpoint the base config matches; `compiles`: the adapter calls
    the model itself, so `torch.compile` of it is what serving would compile; `name` the
    check's name for it where one tiny build serves two families (default `tiny_module`).
    """

    family: str
    model_class: str
    tiny_module: str
    released: str
    base: Callable[[Any], Any] | None = None
    size: dict[str, Any] = field(default_factory=dict)
    processor: dict[str, Any] = field(default_factory=dict)
    compiles: bool = False
    name: str = ""


def _config(name: str, **kwargs: Any) -> Callable[[Any], Any]:
    return lambda tiny: getattr(transformers, name)(**kwargs)


def florence2_base(tiny: Any) -> Any:
    """Florence-2-base (DaViT, projection 768; BART 6+6 layers, d_model 768) over the tiny
    build's tokenizer ids: its vocabulary is the offline one (~1.3k tokens, not 51k, so the LM
    head is ~38M parameters lighter than the released one's)."""
    text = tiny.text_config
    ids = {k: getattr(text, k) for k in ("bos_token_id", "pad_token_id", "eos_token_id")}
    bart = transformers.BartConfig(
        vocab_size=text.vocab_size,
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        max_position_embeddings=1024,
        decoder_start_token_id=text.decoder_start_token_id,
        **ids,
    )
    vision = transformers.Florence2VisionConfig(projection_dim=768)
    return transformers.Florence2Config(
        vision_config=vision.to_dict(),
        text_config=bart.to_dict(),
        image_token_id=tiny.image_token_id,
    )


def _square(side: int) -> dict[str, Any]:
    return {"size": {"height": side, "width": side}}


def _clip_crop(side: int) -> dict[str, Any]:
    return {"size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side}}


CHECKPOINTS: dict[str, Checkpoint] = {
    c.name or c.tiny_module: c
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
            "Florence-2-base (768 px; the offline tokenizer's vocabulary)",
            florence2_base,
            {"size": {"height": 768, "width": 768}, "image_seq_length": (768 // 32) ** 2 + 1},
        ),
        Checkpoint(
            "sam2",
            "Sam2VideoModel",
            "sam2",
            "sam2.1-hiera-small (1024 px)",
            sam21_small,
            SAM2_SIZE,
            SAM2_PROCESSOR,
        ),
        Checkpoint(
            "samurai",
            "Sam2VideoModel",
            "sam2",
            "sam2.1-hiera-small (1024 px) under SAMURAI",
            sam21_small,
            SAM2_SIZE,
            SAM2_PROCESSOR,
            name="samurai",
        ),
        Checkpoint(
            "edgetam",
            "EdgeTamVideoModel",
            "edgetam",
            "EdgeTAM (RepViT-M1, 1024 px)",
            edgetam_base,
            SAM2_SIZE,
            SAM2_PROCESSOR,
        ),
        Checkpoint(
            "sam3_tracker",
            "Sam3VideoModel",
            "sam3_video",
            "SAM 3 video (1008 px; the tiny build's detection thresholds)",
            sam3_base,
            SAM3_SIZE,
            SAM3_PROCESSOR,
            name="sam3_tracker",
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
            compiles=True,
        ),
        Checkpoint(
            "resnet_classifier",
            "ResNetForImageClassification",
            "resnet_classifier",
            "resnet-50",
            _config("ResNetConfig", num_labels=1000),
            {"size": {"shortest_edge": 224}},
            compiles=True,
        ),
        Checkpoint(
            "segformer",
            "SegformerForSemanticSegmentation",
            "segformer",
            "segformer-b0 (ADE20k head, 512 px)",
            _config("SegformerConfig", num_labels=150),
            _square(512),
            compiles=True,
        ),
        Checkpoint(
            "depth_anything",
            "DepthAnythingForDepthEstimation",
            "depth_anything",
            "Depth-Anything-V2-Small (518 px)",
            _config("DepthAnythingConfig"),
            _square(518),
            compiles=True,
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


def _set_input_size(directory: Path, checkpoint: Checkpoint) -> None:
    """Give the saved processor the base model's input size: `size` into its image
    processor, `processor` into the rest (one level of nesting merged)."""
    path = _processor_file(directory)
    if path is None or not (checkpoint.size or checkpoint.processor):
        return
    document = json.loads(path.read_text())
    document.get("image_processor", document).update(checkpoint.size)
    for key, value in checkpoint.processor.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key].update(value)
        else:
            document[key] = value
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
        tiny = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
        model = model_class(checkpoint.base(tiny)).eval()
        model.save_pretrained(directory)
        _set_input_size(directory, checkpoint)
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
