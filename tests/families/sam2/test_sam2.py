"""SAM2 streaming tracker against a tiny random `Sam2VideoModel`: parity with transformers'
whole-video propagation, the output contract, prompt timing, per-session state, bounded
memory, bad inputs, options (loading, unloading and corrupt weights: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import Sam2VideoModel

from tests.families.adapters import make_adapter
from tests.families.sam2.reference import BOXES, CASES, HEIGHT, WIDTH, reference
from tests.tiny.sam2 import sliding_video
from tests.tracked import TrackedRow, step_rows
from zooserve.core.errors import ConfigError, InvalidInput
from zooserve.families.kinds import TrackPrompt
from zooserve.families.sam2.tracker import Sam2Tracker
from zooserve.tracking.kalman import mask_box

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    return sliding_video(tmp_path_factory.mktemp("sam2") / "slide.mp4")


def make(path: Path, family: str = "sam2", **options: float) -> Sam2Tracker:
    tracker = make_adapter(Sam2Tracker, path, family, options=options)
    assert tracker.family == family
    return tracker


@pytest.fixture(scope="module")
def tracker(sam2_path: Path) -> Sam2Tracker:
    loaded = make(sam2_path)
    loaded.load()
    return loaded


def run(
    tracker: Sam2Tracker, frames: list[np.ndarray], prompts: list[TrackPrompt]
) -> list[list[TrackedRow]]:
    session = tracker.start(prompts, WIDTH, HEIGHT)
    return [step_rows(tracker, session, i, frame) for i, frame in enumerate(frames)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_whole_video_propagation(
    tracker: Sam2Tracker, sam2_path: Path, video: list[np.ndarray], case: str
) -> None:
    prompts, inputs = CASES[case]
    got = run(tracker, video, prompts)
    expected = reference(Sam2VideoModel, sam2_path, video, **inputs)
    assert len(got) == len(expected) == len(video)
    for objects, (masks, probabilities) in zip(got, expected, strict=True):
        assert [o.object_id for o in objects] == [p.object_id for p in prompts]
        for obj, mask, probability in zip(objects, masks, probabilities.reshape(-1), strict=True):
            np.testing.assert_array_equal(obj.mask, mask)
            assert obj.score == pytest.approx(float(probability), abs=1e-5)
    coverage = [float(o.mask.mean()) for objects in got for o in objects]  # type: ignore[union-attr]
    assert min(coverage) > 0.02 and max(coverage) < 0.98, "trivial masks prove nothing"
    if case == "two boxes":
        assert any(not np.array_equal(a.mask, b.mask) for a, b in got), "objects must differ"


def test_output_contract(tracker: Sam2Tracker, video: list[np.ndarray]) -> None:
    prompts = [TrackPrompt(1, 0, box=BOXES[1]), TrackPrompt(2, 0, box=BOXES[2])]
    for objects in run(tracker, video[:4], prompts):
        assert [o.object_id for o in objects] == [1, 2]
        for obj in objects:
            assert obj.mask is not None
            assert obj.mask.dtype == bool and obj.mask.shape == (HEIGHT, WIDTH)
            box = mask_box(obj.mask)
            assert obj.box == ((0.0,) * 4 if box is None else tuple(box))
            assert 0.0 <= obj.score <= 1.0
            assert obj.occluded == (box is None or obj.score < 0.5)


def test_prompts_apply_at_the_first_frame_at_or_after_theirs(
    tracker: Sam2Tracker, video: list[np.ndarray]
) -> None:
    correction = TrackPrompt(1, 7, points=((70.0, 40.0),), point_labels=(1,))
    prompts = [TrackPrompt(2, 5, box=BOXES[2]), TrackPrompt(1, 3, box=BOXES[1]), correction]
    session = tracker.start(prompts, WIDTH, HEIGHT)
    sampled = {n: step_rows(tracker, session, n, video[n]) for n in (0, 2, 4, 6, 8)}
    assert sampled[0] == [] and sampled[2] == []  # nothing to track yet: frames skipped
    assert [o.object_id for o in sampled[4]] == [1]
    assert [o.object_id for o in sampled[6]] == [1, 2]
    assert [o.object_id for o in sampled[8]] == [1, 2]  # object 1 corrected there
    outputs = session.inference.output_dict_per_obj[0]["cond_frame_outputs"]
    assert sorted(outputs) == [0, 2], "object 1 prompted at frames 4 and 8 = indices 0 and 2"
    # SAM2 frame indices count processed frames, so "the previous frame" is frame 6 for 8.
    assert session.next_index == 3


def test_mask_prompt_is_taken_as_the_first_mask(
    tracker: Sam2Tracker, video: list[np.ndarray]
) -> None:
    given = np.zeros((HEIGHT, WIDTH), dtype=bool)
    given[20:70, 40:110] = True
    session = tracker.start([TrackPrompt(3, 0, mask=given)], WIDTH, HEIGHT)
    (obj,) = step_rows(tracker, session, 0, video[0])
    assert obj.mask is not None
    iou = (obj.mask & given).sum() / (obj.mask | given).sum()
    assert iou > 0.8 and not obj.occluded


def test_sessions_are_independent(tracker: Sam2Tracker, video: list[np.ndarray]) -> None:
    """All per-video state lives in the session: interleaving two requests changes nothing."""
    first, second = [TrackPrompt(1, 0, box=BOXES[1])], [TrackPrompt(5, 0, box=BOXES[2])]
    alone = [run(tracker, video[:5], p) for p in (first, second)]
    sessions = [tracker.start(p, WIDTH, HEIGHT) for p in (first, second)]
    interleaved: list[list[list[TrackedRow]]] = [[], []]
    for i, frame in enumerate(video[:5]):
        for k in (1, 0):
            interleaved[k].append(step_rows(tracker, sessions[k], i, frame))
    for solo, mixed in zip(alone, interleaved, strict=True):
        for a, b in zip(solo, mixed, strict=True):
            assert [o.object_id for o in a] == [o.object_id for o in b]
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x.mask, y.mask)


def test_session_memory_is_bounded(tracker: Sam2Tracker, video: list[np.ndarray]) -> None:
    session = tracker.start([TrackPrompt(1, 0, box=BOXES[1])], WIDTH, HEIGHT)
    held = []
    for i in range(24):
        step_rows(tracker, session, i, video[i % len(video)])
        held.append(tracker.session_bytes(session))
    assert held[0] > 0
    assert held[3] < held[8], "the memory bank fills its window first"
    assert held[-1] == held[12], "then old frames are dropped: no growth with video length"


BAD_PROMPTS = {
    "none": [],
    "nothing to track": [TrackPrompt(1, 0)],
    "inverted box": [TrackPrompt(1, 0, box=(50.0, 50.0, 10.0, 60.0))],
    "box outside": [TrackPrompt(1, 0, box=(200.0, 10.0, 260.0, 50.0))],
    "labels mismatch": [TrackPrompt(1, 0, points=((10.0, 10.0),), point_labels=(1, 0))],
    "bad label": [TrackPrompt(1, 0, points=((10.0, 10.0),), point_labels=(2,))],
    "mask size": [TrackPrompt(1, 0, mask=np.ones((10, 10), bool))],
    "empty mask": [TrackPrompt(1, 0, mask=np.zeros((HEIGHT, WIDTH), bool))],
    "mask and box": [TrackPrompt(1, 0, box=BOXES[1], mask=np.ones((HEIGHT, WIDTH), bool))],
    "twice": [TrackPrompt(1, 0, box=BOXES[1]), TrackPrompt(1, 0, box=BOXES[2])],
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
def test_bad_prompts_rejected(tracker: Sam2Tracker, case: str) -> None:
    with pytest.raises(InvalidInput):
        tracker.start(BAD_PROMPTS[case], WIDTH, HEIGHT)


def test_bad_frames_rejected(tracker: Sam2Tracker, video: list[np.ndarray]) -> None:
    session = tracker.start([TrackPrompt(1, 0, box=BOXES[1])], WIDTH, HEIGHT)
    step_rows(tracker, session, 4, video[4])
    with pytest.raises(InvalidInput):
        step_rows(tracker, session, 4, video[4])  # not after the last frame
    with pytest.raises(InvalidInput):
        step_rows(tracker, session, 5, video[5][:, :100])  # wrong size
    with pytest.raises(InvalidInput):
        step_rows(tracker, session, 5, video[5].astype(np.float32))
    assert len(step_rows(tracker, session, 5, video[5])) == 1  # the session survived the mistakes


def test_unknown_or_bad_options_fail_before_loading(sam2_path: Path) -> None:
    with pytest.raises(ConfigError):
        make(sam2_path, occlusion_treshold=0.5)
    with pytest.raises(ConfigError):
        make(sam2_path, occlusion_threshold="high")  # type: ignore[arg-type]
