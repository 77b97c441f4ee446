"""Tracking by detection: another configured detector finds objects in every frame, ByteTrack
(the `trackers` package) links them into tracks.

The adapter loads nothing heavy: its detector is a separate model (`options.detector`) that
the track pipeline leases from the manager, runs in batches and hands over per frame through
`step_with_detections`. That keeps the detector shared, budgeted and evictable like any model,
and lets detection batch frames. `step(session, n, image)` therefore refuses: without the
pipeline there are no detections.

Prompts choose what is reported. With no prompts (a text request: the texts are the
detector's queries) every track is an object; objects seen in the session's first frame get an
id at once, later ones when a second detection confirms them. With box / mask / point prompts
only the prompted objects are reported, under the caller's ids: at the prompt's frame the best
matching detection (IoU for boxes and masks, containment for points) is bound to the object;
a box or mask the detector missed is added as a detection so the track still starts there.
A bound track is confirmed at once (ByteTrack would drop an unconfirmed track on its second
missed frame), so an object keeps its id through `lost_track_frames` missed frames, reported
`occluded` at its predicted box. When it comes back ByteTrack re-associates it with the
prediction; if the prediction drifted away (the object stopped while hidden), a new track born
on the object's last seen box takes the object's id. Masks pass through when the detector
segments.

Options (`models.<name>.options`): detector (required, a model name), lost_track_frames (30),
minimum_iou (0.1, association), high_confidence (0.5, ByteTrack's first-stage threshold),
new_track_confidence (0.5), prompt_iou (0.3, box prompt to detection), queries (texts for an
open-vocabulary detector when prompts are boxes; default: the config's default_prompts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from zooserve.core.errors import ConfigError
from zooserve.families.base import Image
from zooserve.families.kinds import Tracker, TrackPrompt
from zooserve.families.results import tracked_objects
from zooserve.tracking.kalman import box_gap, box_inside, clip_box

#: Confidence ByteTrack sees for a detection a prompt chose, so it always starts a track.
PROMPTED = 1.0
#: The model id of this weightless family (its code ships in the `trackers` package).
BUILTIN_ID = "builtin:bytetrack"


@dataclass
class ByteTrackSession:
    """All per-video state: the ByteTrack instance (never shared) and object bindings."""

    tracker: ByteTrackTracker
    width: int
    height: int
    prompts: dict[int, list[TrackPrompt]]  # frame number -> prompts given at that frame
    follow_all: bool  # no prompts: every confirmed track is an object
    object_of: dict[Any, int] = field(default_factory=dict)  # tracklet -> object id
    last_seen: dict[int, np.ndarray] = field(default_factory=dict)  # object id -> detected box
    next_object_id: int = 1
    frames_seen: int = 0


class DetectionTracker(Tracker):
    """Per-frame detections (from `options.detector`) linked into tracks by ByteTrack."""

    family = "detection_tracker"

    @classmethod
    def builtin_source(cls, model_id: str) -> str | None:
        """`builtin:bytetrack` is present wherever the `trackers` package imports."""
        return model_id if model_id == BUILTIN_ID else None

    @classmethod
    def estimate_bytes(cls, source: str, device: str) -> int | None:
        return 0  # no weights: the detector is budgeted as its own model

    def load(self) -> None:
        detector = self.spec.options.get("detector")
        if not isinstance(detector, str) or not detector:
            raise ConfigError(
                f"models.{self.spec.name}.options.detector must name the detector model "
                "whose detections ByteTrack links (e.g. detector: yolo11n-seg)"
            )
        self.detector_name = detector
        options = self.spec.options
        self.lost_track_frames = int(options.get("lost_track_frames", 30))
        self.minimum_iou = float(options.get("minimum_iou", 0.1))
        self.high_confidence = float(options.get("high_confidence", 0.5))
        self.new_track_confidence = float(options.get("new_track_confidence", 0.5))
        self.prompt_iou = float(options.get("prompt_iou", 0.3))
        queries = options.get("queries")
        self.queries = [str(q) for q in queries] if isinstance(queries, list) else None

    def memory_bytes(self) -> int:
        return 0  # no weights: the detector is budgeted as its own model

    def start(self, prompts: Sequence[TrackPrompt], width: int, height: int) -> ByteTrackSession:
        by_frame: dict[int, list[TrackPrompt]] = defaultdict(list)
        for prompt in prompts:
            by_frame[prompt.frame_number].append(prompt)
        tracker = ByteTrackTracker(
            # frame_rate 30 makes lost_track_buffer count frames of this video.
            lost_track_buffer=self.lost_track_frames,
            frame_rate=30.0,
            track_activation_threshold=self.new_track_confidence,
            # Ids are ours (bound at spawn or first confirmation below); the library's own
            # confirmation delay would only hide the rows of young tracks.
            minimum_consecutive_frames=1,
            minimum_iou_threshold=self.minimum_iou,
            high_conf_det_threshold=self.high_confidence,
        )
        return ByteTrackSession(tracker, width, height, dict(by_frame), follow_all=not prompts)

    def step(self, session: Any, frame_number: int, image: Image) -> sv.Detections:
        raise TypeError(
            f"{self.spec.name} tracks detections of {self.detector_name!r}: "
            "call step_with_detections (the track pipeline does)"
        )

    def step_with_detections(
        self, session: ByteTrackSession, frame_number: int, detections: sv.Detections
    ) -> sv.Detections:
        """Link one frame's detections (xyxy px of this video, frames in increasing order)."""
        prompts = session.prompts.get(frame_number, [])
        candidates = _with_prompts(detections, prompts, self.prompt_iou, session)
        before = set(session.tracker.tracks)
        linked = session.tracker.update(candidates)
        ids = linked.tracker_id if linked.tracker_id is not None else np.empty(0, int)
        row_of = {int(t): i for i, t in enumerate(ids) if t != -1}
        spawned = {t: _spawn_row(t, linked) for t in session.tracker.tracks if t not in before}
        first_frame = session.frames_seen == 0
        session.frames_seen += 1

        def row_for(tracklet: Any) -> int | None:
            if tracklet in spawned:
                return spawned[tracklet]
            if tracklet.time_since_update == 0 and tracklet.tracker_id != -1:
                return row_of.get(int(tracklet.tracker_id))
            return None

        self._bind(session, linked, row_for, first_frame)
        self._rebind_returning(session, linked, spawned, row_for)
        _confirm(session)
        alive = set(session.tracker.tracks)
        session.object_of = {t: o for t, o in session.object_of.items() if t in alive}
        # (object id, box, score, occluded, mask or None) per reported object
        objects: list[tuple[int, Any, float, bool, np.ndarray | None]] = []
        for tracklet, object_id in sorted(session.object_of.items(), key=lambda item: item[1]):
            row = row_for(tracklet)
            if row is None:  # unmatched this frame: coasting on its Kalman prediction
                predicted = box_inside(tracklet.get_state_bbox(), session.width, session.height)
                if predicted is not None:  # a prediction that left the frame is not reported
                    objects.append((object_id, predicted, 0.0, True, None))
                continue
            session.last_seen[object_id] = np.asarray(linked.xyxy[row], np.float32)
            mask = linked.mask[row] if linked.mask is not None else None
            box = clip_box(linked.xyxy[row], session.width, session.height)
            score = float(linked.data["score"][row])
            objects.append(
                (object_id, box, score, False, mask if mask is not None and mask.any() else None)
            )
        if not objects:
            return tracked_objects([], [], [], [])
        object_ids, boxes, scores, occluded, masks = zip(*objects, strict=True)
        return tracked_objects(object_ids, boxes, scores, occluded, masks)

    def _bind(
        self,
        session: ByteTrackSession,
        linked: sv.Detections,
        row_for: Callable[[Any], int | None],
        first_frame: bool,
    ) -> None:
        """Give tracklets object ids: the prompts' ids, or fresh ones when following all."""
        # ByteTrack returns a bare empty Detections (no data) when no detection came back.
        prompted = linked.data.get("prompt_object_id", np.empty(0, int))
        for tracklet in session.tracker.tracks:
            row = row_for(tracklet)
            if row is None:
                continue
            object_id = int(prompted[row])
            if object_id >= 0:  # a prompt at this frame chose this detection: (re)bind it
                session.object_of = {t: o for t, o in session.object_of.items() if o != object_id}
                session.object_of[tracklet] = object_id
            elif (
                session.follow_all
                and tracklet not in session.object_of
                and (first_frame or tracklet.tracker_id != -1)
            ):
                session.object_of[tracklet] = session.next_object_id
                session.next_object_id += 1

    def _rebind_returning(
        self,
        session: ByteTrackSession,
        linked: sv.Detections,
        spawned: dict[Any, int | None],
        row_for: Callable[[Any], int | None],
    ) -> None:
        """Give a lost object's id to a track born this frame near where it was last seen.

        ByteTrack re-associates a returning object by IoU with its Kalman prediction, which is
        wrong when the object changed course while hidden, or was seen once (no velocity yet)
        before it was lost. A new, unbound track of similar size (area ratio 1/2..2) whose centre
        is within one box diagonal of the object's last detected box is that object coming
        back: it takes the id (the nearest such object's), and the stale track is dropped.
        """
        lost = {
            tracklet: object_id
            for tracklet, object_id in session.object_of.items()
            if row_for(tracklet) is None and object_id in session.last_seen
        }
        for tracklet, row in spawned.items():
            if not lost or row is None or tracklet in session.object_of:
                continue
            box = np.asarray(linked.xyxy[row], np.float32)
            stale = min(lost, key=lambda t: box_gap(session.last_seen[lost[t]], box))
            if box_gap(session.last_seen[lost[stale]], box) > 1.0:
                continue
            object_id = lost.pop(stale)
            del session.object_of[stale]
            session.tracker.tracks = [t for t in session.tracker.tracks if t is not stale]
            session.object_of[tracklet] = object_id

    def session_bytes(self, session: Any) -> int:
        """The tracklets' Kalman filter arrays (a few KB per track)."""
        total = 0
        for tracklet in session.tracker.tracks:
            kf = tracklet.state_estimator.kf
            total += sum(v.nbytes for v in vars(kf).values() if isinstance(v, np.ndarray))
        return total


def _with_prompts(
    detections: sv.Detections,
    prompts: Sequence[TrackPrompt],
    prompt_iou: float,
    session: ByteTrackSession,
) -> sv.Detections:
    """The frame's detections as ByteTrack input, each carrying `prompt_object_id` (-1: none)
    and its original `score`; prompts choose a detection or add their own box."""
    count = len(detections)
    boxes = np.asarray(detections.xyxy, dtype=np.float32).reshape(-1, 4)
    scores = (
        np.ones(count, np.float32)
        if detections.confidence is None
        else np.asarray(detections.confidence, dtype=np.float32)
    )
    masks = None if detections.mask is None else np.asarray(detections.mask, dtype=bool)
    prompt_ids = np.full(count, -1, dtype=int)
    added_boxes, added_masks, added_ids = [], [], []
    for prompt in prompts:
        box = _prompt_box(prompt)
        row = _choose(boxes, prompt, box, prompt_iou, taken=prompt_ids >= 0)
        if row is not None:
            prompt_ids[row] = prompt.object_id
        elif box is not None:  # the detector missed it: the prompt's box starts the track
            added_boxes.append(box)
            added_ids.append(prompt.object_id)
            added_masks.append(
                prompt.mask
                if prompt.mask is not None
                else np.zeros((session.height, session.width), bool)
            )
    confidence = np.where(prompt_ids >= 0, PROMPTED, scores)
    if added_boxes:
        boxes = np.concatenate([boxes, np.asarray(added_boxes, np.float32)])
        scores = np.concatenate([scores, np.ones(len(added_boxes), np.float32)])
        confidence = np.concatenate([confidence, np.full(len(added_boxes), PROMPTED)])
        prompt_ids = np.concatenate([prompt_ids, np.asarray(added_ids, int)])
        if masks is not None:
            masks = np.concatenate([masks, np.asarray(added_masks, bool)])
    return sv.Detections(
        xyxy=boxes,
        confidence=confidence.astype(np.float32),
        mask=masks,
        data={"score": scores, "prompt_object_id": prompt_ids},
    )


def _prompt_box(prompt: TrackPrompt) -> np.ndarray | None:
    """The prompt's box, or its mask's bounding box; None for point-only prompts."""
    if prompt.box is not None:
        return np.asarray(prompt.box, np.float32)
    if prompt.mask is not None and prompt.mask.any():
        ys, xs = np.nonzero(prompt.mask)
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    return None


def _choose(
    boxes: np.ndarray,
    prompt: TrackPrompt,
    box: np.ndarray | None,
    prompt_iou: float,
    taken: np.ndarray,
) -> int | None:
    """Row of the detection a prompt means: best IoU with its box, else the smallest box that
    holds every positive point and no negative one."""
    if len(boxes) == 0:
        return None
    if box is not None:
        ious = sv.box_iou_batch(box[None], boxes)[0]
        ious[taken] = 0.0
        best = int(np.argmax(ious))
        return best if ious[best] >= prompt_iou else None
    inside = np.ones(len(boxes), bool)
    labels = prompt.point_labels or (1,) * len(prompt.points)
    for (x, y), label in zip(prompt.points, labels, strict=True):
        holds = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        inside &= holds if label == 1 else ~holds
    inside &= ~taken
    if not inside.any() or 1 not in labels:
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmin(np.where(inside, areas, np.inf)))


def _confirm(session: ByteTrackSession) -> None:
    """Give every bound tracklet a ByteTrack id now. ByteTrack confirms a track on its second
    detection and prunes an unconfirmed one on its second missed frame: an object the caller
    prompted (or saw in the first frame) must instead coast for `lost_track_frames`."""
    for tracklet in session.object_of:
        if tracklet.tracker_id == -1:
            tracklet.tracker_id = session.tracker._allocate_tracker_id()


def _spawn_row(tracklet: Any, linked: sv.Detections) -> int | None:
    """The detection a new tracklet was made from: ByteTrack starts it at that exact box."""
    state = np.asarray(tracklet.get_state_bbox(), np.float32)
    candidates = np.flatnonzero(linked.tracker_id == -1)
    if len(candidates) == 0:
        return None
    distances = np.abs(linked.xyxy[candidates] - state).sum(axis=1)
    return int(candidates[int(np.argmin(distances))])
