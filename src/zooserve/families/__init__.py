"""Registry of model families: family id -> adapter class, imported only when used.

The families are grouped by backend, one file per family over its kind's contract (base.py,
kinds.py): `hf/` (transformers checkpoints, over `hf/adapter.py`), `sam2/` (SAM 2 video
trackers), `ultralytics/`, `opencv/`, `onnx/`, `facenet/`, `bytetrack/`. Adding a family = one
file in its backend's folder + one line here + one test.

The registry is project-wide: a family whose adapter cannot live below the manager is
registered from its own layer. `local_llm` is the one such: `engines/local.py` holds its adapter
next to the engine that fails over to it, because it decodes with the engines' grammar
constraints; it is imported only when that family loads, so nothing here imports upward.
"""

from __future__ import annotations

from importlib import import_module

from zooserve.core.errors import FamilyNotImplemented
from zooserve.families.base import ModelAdapter

#: family id -> "module:Class". Lazy so optional extras (ultralytics) are imported only if used.
FAMILIES: dict[str, str] = {
    "owlv2": "zooserve.families.hf.owlv2:Owlv2Detector",
    "grounding_dino": "zooserve.families.hf.grounding_dino:GroundingDinoDetector",
    "florence2": "zooserve.families.hf.florence2:Florence2Detector",
    "yolo_world": "zooserve.families.ultralytics.yolo_world:YoloWorldDetector",
    "opencv_hog": "zooserve.families.opencv.detectors:HogPeopleDetector",
    "opencv_cascade": "zooserve.families.opencv.detectors:CascadeDetector",
    "darknet_yolo": "zooserve.families.opencv.darknet_yolo:DarknetYoloDetector",
    "rf_detr": "zooserve.families.hf.rf_detr:RfDetrDetector",
    "sam3": "zooserve.families.hf.sam3:Sam3Detector",
    # the zoo (enrichment)
    "yolo": "zooserve.families.ultralytics.yolo:YoloDetector",
    "mtcnn": "zooserve.families.facenet.mtcnn:MtcnnFaceDetector",
    "vit_classifier": "zooserve.families.hf.image_classifier:ImageClassifier",
    "resnet_classifier": "zooserve.families.hf.image_classifier:ImageClassifier",
    "clip": "zooserve.families.hf.clip:ClipModel",
    "osnet": "zooserve.families.onnx.osnet:OsnetEmbedder",
    "vitpose": "zooserve.families.hf.vitpose:VitPoseEstimator",
    "segformer": "zooserve.families.hf.segformer:SegformerSegmenter",
    "depth_anything": "zooserve.families.hf.depth_anything:DepthAnythingEstimator",
    "xclip": "zooserve.families.hf.xclip:XClipActionRecognizer",
    "rapidocr": "zooserve.families.onnx.rapidocr:RapidOcrReader",
    "brisque": "zooserve.families.opencv.brisque:BrisqueQuality",
    # video tracking
    "sam2": "zooserve.families.sam2.tracker:Sam2Tracker",
    "samurai": "zooserve.families.sam2.samurai:SamuraiTracker",
    "sam2long": "zooserve.families.sam2.sam2long:Sam2LongTracker",
    "edgetam": "zooserve.families.sam2.edgetam:EdgeTamTracker",
    "sam3_tracker": "zooserve.families.hf.sam3_tracker:Sam3ConceptTracker",
    "detection_tracker": "zooserve.families.bytetrack.detection_tracker:DetectionTracker",
    # language models run locally (engines fall back to it; see the module docstring) and
    # text embeddings
    "local_llm": "zooserve.engines.local:LocalGenerator",
    "sentence_transformers": "zooserve.families.hf.sentence_embedder:SentenceEmbedder",
}


def adapter_class(family: str) -> type[ModelAdapter]:
    """The adapter class for a family id; unknown ids list the known ones."""
    target = FAMILIES.get(family)
    if target is None:
        raise FamilyNotImplemented(
            f"no adapter for model family {family!r} in this version",
            {"known_families": sorted(FAMILIES)},
        )
    module_name, class_name = target.split(":")
    cls: type[ModelAdapter] = getattr(import_module(module_name), class_name)
    return cls
