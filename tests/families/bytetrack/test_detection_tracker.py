"""ByteTrack tracking-by-detection on a rendered scene with known trajectories.

The detector here is exact by construction: its detections are the scene's ground truth (with
1 px of seeded jitter, and nothing for an object more than 65% hidden), fed through
`step_with_detections`, the path the track pipeline uses. What is under test is the tracker:
identities through a crossing, coasting through occlusion, masks, prompts, isolation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import supervision as sv

from tests.track_scenes import Box, Crossing, mot_scores
from tests.tracked import TrackedRow, tracked_rows
from zooserve.catalog import Config, ModelSpec
from zooserve.core.errors import ConfigError
from zooserve.families import adapter_class, sources
from zooserve.families.bytetrack.detection_tracker import ByteTrackSession, DetectionTracker
from zooserve.families.kinds import TrackPrompt

SCENE = Crossing()
VISIBLE_SHARE = 0.35  # below this the "detector" misses the object


def make_tracker(**options: object) -> DetectionTracker:
    spec = ModelSpec(
        name="bytetrack",
        model_id="builtin:bytetrack",
        family="detection_tracker",
        options={"detector": "exact", **options},
    )
    tracker = adapter_class("detection_tracker")(spec, spec.model_id, "cpu")
    assert isinstance(tracker, DetectionTracker)
    tracker.load()
    return tracker


def iou(a: Box, b: Box) -> float:
    return float(sv.box_iou_batch(np.array([a]), np.array([b]))[0, 0])


def detections(
    frame: int, rng: np.random.Generator, skip: frozenset[int] = frozenset()
) -> sv.Detections:
    """Ground truth of a frame as a segmenting detector would return it."""
    boxes, masks, names = [], [], []
    visible = SCENE.masks(frame)
    for object_id, box in SCENE.boxes(frame).items():
        area = (box[2] - box[0]) * (box[3] - box[1])
        if object_id in skip or visible[object_id].sum() < VISIBLE_SHARE * area:
            continue
        boxes.append(np.asarray(box) + rng.uniform(-1, 1, 4))
        masks.append(visible[object_id])
        names.append(f"object-{object_id}")
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=np.full(len(boxes), 0.9, np.float32),
        mask=np.asarray(masks, bool).reshape(-1, SCENE.height, SCENE.width),
        data={"class_name": np.array(names, dtype=str)},
    )


def rows_of(
    tracker: DetectionTracker, session: Any, frame: int, found: sv.Detections
) -> list[TrackedRow]:
    """The tracker's `sv.Detections` for one frame, one row view per object."""
    return tracked_rows(tracker.step_with_detections(session, frame, found))


def run(
    tracker: DetectionTracker,
    prompts: list[TrackPrompt],
    skip: dict[int, frozenset[int]] | None = None,
) -> list[list[TrackedRow]]:
    rng = np.random.default_rng(7)
    session = tracker.start(prompts, SCENE.width, SCENE.height)
    return [
        rows_of(tracker, session, f, detections(f, rng, (skip or {}).get(f, frozenset())))
        for f in range(SCENE.frames)
    ]


def test_identities_hold_through_the_crossing() -> None:
    frames = run(make_tracker(), prompts=[])
    truth = [SCENE.boxes(f) for f in range(SCENE.frames)]
    hypotheses = [{o.object_id: o.box for o in objects} for objects in frames]
    scores = mot_scores(truth, hypotheses)
    assert scores["mota"] >= 0.95 and scores["idf1"] >= 0.95, scores
    assert scores["num_switches"] == 0
    # Each ground-truth object keeps the id it got in frame 0, before and after the crossing
    # (red and blue pass each other around frame 18, overlapping by more than half).
    for object_id in (1, 2, 3):
        ids = {
            max(objects, key=lambda o: iou(o.box, SCENE.boxes(f)[object_id])).object_id
            for f, objects in enumerate(frames)
            if object_id in SCENE.boxes(f)
        }
        assert len(ids) == 1, f"object {object_id} changed id: {ids}"
    assert sorted({o.object_id for objects in frames for o in objects}) == [1, 2, 3]


def test_a_hidden_object_coasts_as_occluded_then_resumes() -> None:
    frames = run(make_tracker(), prompts=[])
    red = SCENE.movers[1]
    hidden = [
        f
        for f in range(SCENE.frames)
        if SCENE.masks(f)[1].sum() < VISIBLE_SHARE * red.size[0] * red.size[1]
    ]
    assert hidden, "the scene must hide red behind blue for a while"
    red_id = next(o.object_id for o in frames[0] if iou(o.box, SCENE.boxes(0)[1]) > 0.5)
    for f in hidden:
        (coasting,) = [o for o in frames[f] if o.object_id == red_id]
        assert coasting.occluded and coasting.mask is None and coasting.score == 0.0
        assert iou(coasting.box, SCENE.boxes(f)[1]) > 0.6  # the Kalman prediction follows it
    after = frames[hidden[-1] + 1]
    assert any(o.object_id == red_id and not o.occluded for o in after)


def test_masks_pass_through_from_a_segmenting_detector() -> None:
    frames = run(make_tracker(), prompts=[])
    for f in (0, 17, 30):
        visible = SCENE.masks(f)
        for obj in frames[f]:
            if obj.occluded:
                continue
            truth_id = max(visible, key=lambda i: iou(obj.box, SCENE.boxes(f)[i]))
            assert obj.mask is not None and np.array_equal(obj.mask, visible[truth_id])


def test_a_box_prompt_reports_only_that_object_under_the_callers_id() -> None:
    prompt = TrackPrompt(object_id=42, frame_number=0, box=SCENE.boxes(0)[2])  # blue
    frames = run(make_tracker(), prompts=[prompt])
    for f, objects in enumerate(frames):
        (blue,) = objects
        assert blue.object_id == 42
        assert iou(blue.box, SCENE.boxes(f)[2]) > 0.6, f"lost blue at frame {f}"


def test_a_point_prompt_picks_the_detection_that_holds_it() -> None:
    x1, y1, x2, y2 = SCENE.boxes(5)[3]  # green, introduced at frame 5
    prompt = TrackPrompt(
        object_id=9,
        frame_number=5,
        points=(((x1 + x2) / 2, (y1 + y2) / 2), (2.0, 2.0)),
        point_labels=(1, 0),
    )
    frames = run(make_tracker(), prompts=[prompt])
    assert all(objects == [] for objects in frames[:5])  # nothing before its prompt
    for f in range(5, SCENE.frames - 2):
        (green,) = frames[f]
        assert green.object_id == 9 and iou(green.box, SCENE.boxes(f)[3]) > 0.5


def test_a_box_the_detector_missed_still_starts_the_track() -> None:
    prompt = TrackPrompt(object_id=5, frame_number=3, box=SCENE.boxes(3)[1])
    frames = run(
        make_tracker(), prompts=[prompt], skip={3: frozenset({1})}
    )  # red undetected at frame 3
    (red,) = frames[3]
    assert red.object_id == 5 and iou(red.box, SCENE.boxes(3)[1]) > 0.95
    assert red.mask is None  # the prompt gave only a box: no mask is invented
    (later,) = frames[10]
    assert later.object_id == 5 and iou(later.box, SCENE.boxes(10)[1]) > 0.6


def test_sessions_share_nothing() -> None:
    """Two interleaved sessions of one adapter give exactly what each gives alone."""
    tracker = make_tracker()
    alone = run(tracker, prompts=[])
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    a = tracker.start([], SCENE.width, SCENE.height)
    b = tracker.start([], SCENE.width, SCENE.height)
    assert a.tracker is not b.tracker
    for f in range(SCENE.frames):
        for session, rng in ((a, rng_a), (b, rng_b)):
            got = rows_of(tracker, session, f, detections(f, rng))
            assert [(o.object_id, o.box) for o in got] == [(o.object_id, o.box) for o in alone[f]]


def test_session_bytes_count_the_tracks() -> None:
    tracker = make_tracker()
    session = tracker.start([], SCENE.width, SCENE.height)
    assert isinstance(session, ByteTrackSession) and tracker.session_bytes(session) == 0
    rows_of(tracker, session, 0, detections(0, np.random.default_rng(0)))
    one_frame = tracker.session_bytes(session)
    assert one_frame > 0 and one_frame % 3 == 0  # three tracks, same-sized filters


def test_empty_frames_and_lost_tracks() -> None:
    tracker = make_tracker(lost_track_frames=2)
    session = tracker.start([], SCENE.width, SCENE.height)
    empty = sv.Detections.empty()
    rng = np.random.default_rng(0)
    assert rows_of(tracker, session, 0, empty) == []
    # Objects entering after the first frame get an id once a second detection confirms them.
    assert rows_of(tracker, session, 1, detections(1, rng)) == []
    assert len(rows_of(tracker, session, 2, detections(2, rng))) == 3
    coasting = rows_of(tracker, session, 3, empty)
    assert len(coasting) == 3 and all(o.occluded for o in coasting)
    for f in range(4, 7):
        last = rows_of(tracker, session, f, empty)
    assert last == []  # dropped after lost_track_frames


def test_builtin_id_is_present_without_weights() -> None:
    config = Config.model_validate({"models": {}})
    tracker = make_tracker()
    assert sources.locate(config, tracker.spec) == "builtin:bytetrack"
    other = ModelSpec(name="x", model_id="builtin:sort", family="detection_tracker")
    assert sources.locate(config, other) is None


def test_contract_edges() -> None:
    tracker = make_tracker()
    assert tracker.memory_bytes() == 0 and tracker.torch_modules() == []
    with pytest.raises(TypeError, match="step_with_detections"):
        tracker.step(tracker.start([], 8, 8), 0, np.zeros((8, 8, 3), np.uint8))
    spec = ModelSpec(name="bt", model_id="builtin:bytetrack", family="detection_tracker")
    with pytest.raises(ConfigError, match=r"models\.bt\.options\.detector"):
        DetectionTracker(spec, spec.model_id, "cpu").load()


# --- lost tracks (issue 12): kept for lost_track_frames, re-associated when they come back ----


def test_a_box_prompted_object_missed_right_after_its_prompt_coasts_and_comes_back() -> None:
    """ByteTrack drops a track it has seen once on its second missed frame; a prompted object
    must instead stay `occluded` under its id, and take the id back when detected again."""
    prompt = TrackPrompt(object_id=42, frame_number=0, box=SCENE.boxes(0)[2])  # blue
    hidden = range(1, 6)
    frames = run(make_tracker(), prompts=[prompt], skip={f: frozenset({2}) for f in hidden})
    for f in hidden:
        (blue,) = frames[f]
        assert blue.object_id == 42 and blue.occluded and blue.score == 0.0, f
    for f in range(6, 16):
        (blue,) = frames[f]
        assert blue.object_id == 42 and not blue.occluded, f
        assert iou(blue.box, SCENE.boxes(f)[2]) > 0.6, f


def test_an_object_is_dropped_only_after_lost_track_frames() -> None:
    prompt = TrackPrompt(object_id=7, frame_number=0, box=SCENE.boxes(0)[2])
    frames = run(
        make_tracker(lost_track_frames=4),
        prompts=[prompt],
        skip={f: frozenset({2}) for f in range(1, 12)},
    )
    assert [len(frames[f]) for f in range(1, 8)] == [1, 1, 1, 1, 0, 0, 0]
    assert all(o.occluded for f in range(1, 5) for o in frames[f])


def stop_and_go(frame: int) -> Box:
    """A 24x22 box moving right 4 px a frame until frame 6, then standing still."""
    x = 20.0 + 4.0 * min(frame, 6)
    return (x, 40.0, x + 24.0, 62.0)


def test_an_object_that_stopped_while_hidden_gets_its_id_back() -> None:
    """The Kalman prediction keeps the last velocity and drifts away from an object that
    stopped while hidden: a new track born where it was last seen takes its id back."""
    hidden = range(7, 19)
    tracker = make_tracker()
    session = tracker.start(
        [TrackPrompt(object_id=3, frame_number=0, box=stop_and_go(0))], SCENE.width, SCENE.height
    )
    seen = []
    for f in range(26):
        boxes = np.empty((0, 4), np.float32) if f in hidden else np.array([stop_and_go(f)])
        found = sv.Detections(
            xyxy=boxes.astype(np.float32), confidence=np.full(len(boxes), 0.9, np.float32)
        )
        seen.append(rows_of(tracker, session, f, found))
    assert all(o.occluded for f in hidden for o in seen[f])
    drifted = seen[hidden[-1]][0].box
    assert iou(drifted, stop_and_go(hidden[-1])) < 0.1, "the scene must defeat the prediction"
    for f in range(hidden[-1] + 1, 26):
        (back,) = seen[f]
        assert back.object_id == 3 and not back.occluded
        assert iou(back.box, stop_and_go(f)) > 0.9


@pytest.mark.parametrize(
    ("start", "velocity"),
    [
        ((700.0, 200.0, 760.0, 330.0), (8.0, 0.0, 8.0, 0.0)),  # walks out at the right edge
        ((300.0, 200.0, 400.0, 330.0), (6.0, 0.0, -6.0, 0.0)),  # shrinks: width goes negative
    ],
)
def test_coasting_boxes_stay_valid_and_inside_the_frame(
    start: tuple[float, float, float, float], velocity: tuple[float, float, float, float]
) -> None:
    """Issue 22: a coasting track's prediction came back inverted (x1=768, x2=767) when it
    left the 768x576 frame; a predicted box that leaves the frame is dropped or clipped."""
    tracker = make_tracker()
    session = tracker.start([], 768, 576)
    seen = []
    for frame in range(40):
        box = np.asarray(start) + min(frame, 7) * np.asarray(velocity)
        found = frame < 8  # detected while it moves, then lost
        rows = box[None].astype(np.float32) if found else np.empty((0, 4), np.float32)
        dets = sv.Detections(xyxy=rows, confidence=np.full(len(rows), 0.9, np.float32))
        seen += rows_of(tracker, session, frame, dets)
    assert any(o.occluded for o in seen)  # it did coast
    for o in seen:
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576, o
