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
