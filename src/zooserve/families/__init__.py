"""Registry of model families: family id -> adapter class, imported only when used.

Adding a family = one file in this package + one line here + one test.
"""

from __future__ import annotations

from importlib import import_module

from zooserve.errors import FamilyNotImplemented
from zooserve.families.base import ModelAdapter

#: family id -> "module:Class". Lazy so optional extras (ultralytics) are imported only if used.
FAMILIES: dict[str, str] = {
    "owlv2": "zooserve.families.owlv2:Owlv2Detector",
    "grounding_dino": "zooserve.families.grounding_dino:GroundingDinoDetector",
    "florence2": "zooserve.families.florence2:Florence2Detector",
    "yolo_world": "zooserve.families.yolo_world:YoloWorldDetector",
    "opencv_hog": "zooserve.families.opencv_detectors:HogPeopleDetector",
    "opencv_cascade": "zooserve.families.opencv_detectors:CascadeDetector",
    "darknet_yolo": "zooserve.families.darknet_yolo:DarknetYoloDetector",
    # the zoo (enrichment)
    "yolo": "zooserve.families.yolo:YoloDetector",
    "mtcnn": "zooserve.families.mtcnn:MtcnnFaceDetector",
    "vit_classifier": "zooserve.families.image_classifier:ImageClassifier",
    "resnet_classifier": "zooserve.families.image_classifier:ImageClassifier",
    "clip": "zooserve.families.clip:ClipModel",
    "osnet": "zooserve.families.osnet:OsnetEmbedder",
    "vitpose": "zooserve.families.vitpose:VitPoseEstimator",
    "segformer": "zooserve.families.segformer:SegformerSegmenter",
    "depth_anything": "zooserve.families.depth_anything:DepthAnythingEstimator",
    "xclip": "zooserve.families.xclip:XClipActionRecognizer",
    "rapidocr": "zooserve.families.rapidocr:RapidOcrReader",
    "brisque": "zooserve.families.brisque:BrisqueQuality",
    # video tracking
    "sam2": "zooserve.families.sam2:Sam2Tracker",
    "samurai": "zooserve.families.samurai:SamuraiTracker",
    "sam2long": "zooserve.families.sam2long:Sam2LongTracker",
    "detection_tracker": "zooserve.families.detection_tracker:DetectionTracker",
    # language models run locally (engines fall back to it) and text embeddings
    "local_llm": "zooserve.engines.local:LocalGenerator",
    "sentence_transformers": "zooserve.engines.text_embedder:SentenceEmbedder",
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
