"""The contracts of the other kinds (DESIGN.md "Kinds"); `Detector` lives in base.py.

Each family subclasses exactly one kind and implements its one public method (plus `load`,
`torch_modules`, optionally `warmup`). Inputs are RGB uint8 images (H, W, 3); outputs are
numpy/dataclass results that carry no library-native objects across the layers; boxes, masks
and tracks travel as `sv.Detections` (results.py).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import supervision as sv

from zooserve.families.base import Image, ModelAdapter

# --- result types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float  # 0..1
    box: tuple[float, float, float, float] | None = None  # xyxy px in the input image


@dataclass(frozen=True)
class Quality:
    score: float  # higher = better, 0..100
    flags: dict[str, bool] = field(
        default_factory=dict
    )  # e.g. {"blur": True, "obstruction": False}
    details: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackPrompt:
    """What to track: a box, points (with labels 1=positive, 0=negative) or a mask, at a frame."""

    object_id: int
    frame_number: int
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()
    mask: np.ndarray | None = None  # bool (H, W)
    #: A caller's COCO RLE, decoded into `mask` by the pipeline once its size is checked.
    mask_rle: dict[str, Any] | None = None


# --- kinds -----------------------------------------------------------------------------------


class Classifier(ModelAdapter):
    """Images (crops) -> {label: score} per image, scores in 0..1, sorted high to low."""

    kind = "classifier"
    #: True when `labels` (candidate texts) are required (CLIP/SigLIP zero-shot).
    zero_shot: ClassVar[bool] = False

    @abstractmethod
    def classify(
        self, images: Sequence[Image], labels: Sequence[str] | None = None
    ) -> list[dict[str, float]]: ...


class Embedder(ModelAdapter):
    """Images (or texts) -> float32 vectors (N, D), L2-normalised."""

    kind = "embedder"

    @abstractmethod
    def embed_images(self, images: Sequence[Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        from zooserve.core.errors import InvalidInput

        raise InvalidInput(f"{self.spec.name} embeds images only")


class Segmenter(ModelAdapter):
    """Images -> per image an int label map (H, W) in input pixels; `labels[i]` names class i."""

    kind = "segmenter"
    labels: list[str]

    @abstractmethod
    def segment(self, images: Sequence[Image]) -> list[np.ndarray]: ...


class DepthEstimator(ModelAdapter):
    """Images -> per image a float32 map (H, W) of relative depth, lower = closer."""

    kind = "depth"

    @abstractmethod
    def estimate_depth(self, images: Sequence[Image]) -> list[np.ndarray]: ...


class PoseEstimator(ModelAdapter):
    """One image + person boxes (N, 4) xyxy -> (N, 17, 3) COCO keypoints: x px, y px, score."""

    kind = "pose"

    @abstractmethod
    def estimate_pose(self, image: Image, boxes: np.ndarray) -> np.ndarray: ...


class ActionRecognizer(ModelAdapter):
    """A clip of frames + candidate actions (texts) -> {action: score}, scores sum to 1."""

    kind = "action"

    @abstractmethod
    def recognize(self, frames: Sequence[Image], actions: Sequence[str]) -> dict[str, float]: ...


class OcrReader(ModelAdapter):
    """Images (crops) -> the text lines found in each."""

    kind = "ocr"

    @abstractmethod
    def read(self, images: Sequence[Image]) -> list[list[OcrLine]]: ...


class QualityScorer(ModelAdapter):
    """Images -> a no-reference quality score and flags per image."""

    kind = "quality"

    @abstractmethod
    def score(self, images: Sequence[Image]) -> list[Quality]: ...


class Tracker(ModelAdapter):
    """A video tracker. `start` opens a per-request session (its state is the caller's, never
    the adapter's, so one loaded model serves concurrent requests); `step` consumes frames in
    order and returns the tracked objects of each frame as `sv.Detections` built by
    `results.tracked_objects` (tracker_id = object id, data["occluded"], masks when it segments).
    """

    kind = "tracker"

    @abstractmethod
    def start(self, prompts: Sequence[TrackPrompt], width: int, height: int) -> Any:
        """Return a session object holding all per-video state (memory bank, tracks, ...)."""

    @abstractmethod
    def step(self, session: Any, frame_number: int, image: Image) -> sv.Detections:
        """Process the next frame (frames arrive in increasing order)."""

    def session_bytes(self, session: Any) -> int:
        """Bytes the session holds (its memory bank); counted in the manager's ledger."""
        return 0


class ConceptTracker(Tracker):
    """A tracker prompted by concepts: it finds every instance of each text itself and tracks
    them, so the track pipeline hands it the request's texts (no detector runs first)."""

    @abstractmethod
    def start_concepts(self, texts: Sequence[str], width: int, height: int) -> Any:
        """Return a session that tracks every instance of `texts` from its first frame on."""
