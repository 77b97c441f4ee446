"""SAM2Long on the tiny SAM2: pathways per object, the reported mask is the best pathway's,
occluded/implausible frames stay out of memory, bounded memory, options."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.families.sam2.test_sam2 import BOXES, HEIGHT, WIDTH, make
from tests.tiny.sam2 import sliding_video
from tests.tracked import step_rows
from zooserve.core.errors import ConfigError
from zooserve.families.kinds import TrackPrompt
from zooserve.families.sam2.sam2long import LongTrack, Sam2LongTracker
from zooserve.tracking.pathways import best

PROMPTS = [TrackPrompt(1, 0, box=BOXES[1]), TrackPrompt(2, 0, box=BOXES[2])]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    return sliding_video(tmp_path_factory.mktemp("sam2long") / "slide.mp4", frames=10)


def loaded(path: Path, **options: float) -> Sam2LongTracker:
    tracker = make(path, "sam2long", **options)
    tracker.load()
    return tracker  # type: ignore[return-value]


def test_end_to_end_reports_the_best_pathway(sam2_path: Path, video: list[np.ndarray]) -> None:
    tracker = loaded(sam2_path)
    session = tracker.start(PROMPTS, WIDTH, HEIGHT)
    held, widths = [], []
    for i, frame in enumerate(video):
        objects = step_rows(tracker, session, i, frame)
        held.append(tracker.session_bytes(session))
        assert [o.object_id for o in objects] == [1, 2]
        for obj in objects:
            assert obj.mask is not None and obj.mask.shape == (HEIGHT, WIDTH)
            assert obj.mask.dtype == bool
            track: LongTrack = session.tracks[obj.object_id]
            widths.append(len(track.pathways))
            leader = track.pathways[best(track.pathways)]
            newest = leader.history[i] if i else track.conditioning[0]  # frame 0: the prompt
            assert obj.score == pytest.approx(1 / (1 + math.exp(-newest.object_logit)))
            scores = [p.score for p in track.pathways]
            assert all(s <= 0 for s in scores), "cumulative log-IoU scores"
    assert widths[:2] == [1, 1], "the prompt frame starts one pathway per object"
    assert max(widths) == 3, "then the tree grows to num_pathways"
    assert min(held) > 0


def test_implausible_or_occluded_frames_stay_out_of_memory(
    sam2_path: Path, video: list[np.ndarray]
) -> None:
    """An IoU threshold above any prediction makes every tracked frame ineligible: each
    pathway then keeps (and attends to) only its previous frame besides the prompt."""
    tracker = loaded(sam2_path, iou_threshold=2.0)
    session = tracker.start(PROMPTS, WIDTH, HEIGHT)
    for i, frame in enumerate(video):
        step_rows(tracker, session, i, frame)
    for track in session.tracks.values():
        for pathway in track.pathways:
            assert list(pathway.history) == [len(video) - 1]
            assert not pathway.history[len(video) - 1].eligible
            view = tracker._view(track, pathway, session.next_index)
            assert [slot for slot, _ in view.memories] == [1]
    # With every mask plausible (and the object present), pathways remember a full bank.
    lenient = loaded(sam2_path, iou_threshold=-1.0)
    session = lenient.start(PROMPTS, WIDTH, HEIGHT)
    for i, frame in enumerate(video):
        lenient.step(session, i, frame)
    kept = [len(p.history) for t in session.tracks.values() for p in t.pathways]
    eligible = [
        e.eligible for t in session.tracks.values() for p in t.pathways for e in p.history.values()
    ]
    assert all(eligible), "the tiny model sees its objects (logit > 0) on every frame"
    assert set(kept) == {6}, "each pathway keeps num_maskmem - 1 memory frames"


def test_one_pathway_is_greedy(sam2_path: Path, video: list[np.ndarray]) -> None:
    tracker = loaded(sam2_path, num_pathways=1)
    session = tracker.start(PROMPTS, WIDTH, HEIGHT)
    for i, frame in enumerate(video[:5]):
        assert len(step_rows(tracker, session, i, frame)) == 2
        assert all(len(t.pathways) == 1 for t in session.tracks.values())


@pytest.mark.parametrize("bad", [0, 1.5, -2])
def test_bad_num_pathways(sam2_path: Path, bad: float) -> None:
    with pytest.raises(ConfigError):
        make(sam2_path, "sam2long", num_pathways=bad)


def test_a_later_prompt_collapses_the_tree(sam2_path: Path, video: list[np.ndarray]) -> None:
    tracker = loaded(sam2_path)
    prompts = [*PROMPTS, TrackPrompt(2, 4, box=(90.0, 10.0, 150.0, 60.0))]
    session = tracker.start(prompts, WIDTH, HEIGHT)
    for i in range(4):
        step_rows(tracker, session, i, video[i])
    assert len(session.tracks[2].pathways) == 3
    assert len(step_rows(tracker, session, 4, video[4])) == 2
    track: LongTrack = session.tracks[2]
    assert set(track.conditioning) == {0, 4}
    assert len(track.pathways) == 1 and track.pathways[0].score == 0.0
    assert len(session.tracks[1].pathways) == 3
