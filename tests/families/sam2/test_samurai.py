"""SAMURAI on the tiny SAM2: with SAM2's own choices its explicit-memory step reproduces
`Sam2VideoModel.forward` exactly; with its own choices the memory bank really changes; output
contract, per-session motion state and bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.families.sam2.test_sam2 import BOXES, HEIGHT, WIDTH, make, run
from tests.tiny.sam2 import sliding_video
from tests.tracked import step_rows
from zooserve.families.kinds import TrackPrompt
from zooserve.families.sam2.samurai import SamuraiTrack, SamuraiTracker

PROMPTS = [TrackPrompt(1, 0, box=BOXES[1]), TrackPrompt(2, 0, box=BOXES[2])]
#: SAMURAI with SAM2's choices: no motion term, every frame eligible for memory.
NEUTRAL = {
    "motion_weight": 0.0,
    "memory_mask_iou": float("-inf"),
    "memory_object_logit": float("-inf"),
    "memory_motion_iou": float("-inf"),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    return sliding_video(tmp_path_factory.mktemp("samurai") / "slide.mp4", frames=12)


def loaded(path: Path, family: str = "samurai", **options: float) -> SamuraiTracker:
    tracker = make(path, family, **options)
    tracker.load()
    return tracker  # type: ignore[return-value]


def test_neutral_settings_reproduce_sam2(sam2_path: Path, video: list[np.ndarray]) -> None:
    """The same step from the model's parts (candidates, memory attention, pointers, memory
    encoder) gives exactly transformers' masks and scores when it makes SAM2's choices."""
    sam2 = run(loaded(sam2_path, "sam2"), video, PROMPTS)
    neutral = run(loaded(sam2_path, **NEUTRAL), video, PROMPTS)
    for expected, got in zip(sam2, neutral, strict=True):
        assert [o.object_id for o in got] == [1, 2]
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a.mask, b.mask)
            assert a.score == pytest.approx(b.score, abs=1e-6)
            assert a.box == b.box


def test_memory_selection_changes_what_is_attended(
    sam2_path: Path, video: list[np.ndarray]
) -> None:
    """With tau_mask above any predicted IoU no tracked frame is eligible: the bank holds the
    prompt frame and the previous frame only, and the masks differ from SAM2's."""
    strict = loaded(sam2_path, memory_mask_iou=2.0)
    session = strict.start(PROMPTS, WIDTH, HEIGHT)
    results = [step_rows(strict, session, i, frame) for i, frame in enumerate(video)]
    track: SamuraiTrack = session.tracks[1]
    index = session.next_index
    assert not any(e.eligible for e in track.history.values())
    view = strict._view(track, index)
    assert list(view.conditioning) == [0]
    assert [(slot, id(e)) for slot, e in view.memories] == [(1, id(track.history[index - 1]))]
    assert len(view.pointers) == 3  # pointers still come from the previous frames (as SAM2)
    neutral = run(loaded(sam2_path, **NEUTRAL), video, PROMPTS)
    assert any(
        not np.array_equal(a.mask, b.mask)
        for mine, theirs in zip(results, neutral, strict=True)
        for a, b in zip(mine, theirs, strict=True)
    )


def test_end_to_end_with_defaults(sam2_path: Path, video: list[np.ndarray]) -> None:
    tracker = loaded(sam2_path)
    session = tracker.start(PROMPTS, WIDTH, HEIGHT)
    held = []
    for i, frame in enumerate(video):
        objects = step_rows(tracker, session, i, frame)
        held.append(tracker.session_bytes(session))
        assert [o.object_id for o in objects] == [1, 2]
        for obj in objects:
            assert obj.mask is not None and obj.mask.shape == (HEIGHT, WIDTH)
            assert obj.mask.dtype == bool and 0.0 <= obj.score <= 1.0
    assert min(held) > 0
    assert held[-1] <= max(held[:9]), "memory stops growing once the window is full"
    for obj in (1, 2):
        track: SamuraiTrack = session.tracks[obj]
        assert track.motion.kalman is not None, "the Kalman filter follows each object"
        assert set(track.conditioning) == {0}
        assert max(track.history) == len(video) - 1


def test_sessions_are_independent(sam2_path: Path, video: list[np.ndarray]) -> None:
    tracker = loaded(sam2_path, stable_frames=2)  # the motion term is used early
    alone = run(tracker, video[:6], PROMPTS)
    first = tracker.start(PROMPTS, WIDTH, HEIGHT)
    other = tracker.start([TrackPrompt(4, 0, box=(10.0, 10.0, 60.0, 50.0))], WIDTH, HEIGHT)
    for i, frame in enumerate(video[:6]):
        step_rows(tracker, other, i, frame)
        mixed = step_rows(tracker, first, i, frame)
        for a, b in zip(alone[i], mixed, strict=True):
            np.testing.assert_array_equal(a.mask, b.mask)


def test_a_later_prompt_corrects_an_object(sam2_path: Path, video: list[np.ndarray]) -> None:
    tracker = loaded(sam2_path, stable_frames=2)
    prompts = [*PROMPTS, TrackPrompt(1, 5, box=(40.0, 20.0, 100.0, 80.0))]
    session = tracker.start(prompts, WIDTH, HEIGHT)
    for i in range(5):
        step_rows(tracker, session, i, video[i])
    assert session.tracks[1].motion.stable_frames > 0
    objects = step_rows(tracker, session, 5, video[5])
    assert [o.object_id for o in objects] == [1, 2]
    track: SamuraiTrack = session.tracks[1]
    assert set(track.conditioning) == {0, 5} and track.motion.kalman is None  # restarted
    assert session.tracks[2].motion.kalman is not None  # the other object is unaffected
    step_rows(tracker, session, 6, video[6])
    assert track.motion.kalman is not None


def test_options_survive_unload(sam2_path: Path) -> None:
    tracker = loaded(sam2_path, motion_weight=0.4)
    tracker.unload()
    assert tracker.model is None and tracker.motion.motion_weight == 0.4
