"""A container header's frame count is a claim: sampling costs what the caller asked for, not
what the header declares, and a count the file cannot hold is replaced by the packets it has.
Real files (AVIs whose headers were patched), no mocks."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest

from tests.media_corpus import avi_declaring
from zooserve.core.errors import FramesOutOfRange
from zooserve.media import MediaSource
from zooserve.media.sampling import evenly_spaced, every_interval, pick_evenly

FOUR_BILLION = 4_000_000_000


@pytest.mark.parametrize(
    ("start", "end", "count", "expected"),
    [
        (0, 59, 5, [0, 15, 30, 44, 59]),  # as a list of the range gave
        (10, 20, 3, [10, 15, 20]),
        (0, 2, 8, [0, 1, 2]),
        (7, 7, 3, [7]),
        (5, 100, 1, [5]),
        (0, FOUR_BILLION - 1, 5, [0, 1_000_000_000, 2_000_000_000, 2_999_999_999, 3_999_999_999]),
    ],
)
def test_evenly_spaced_is_arithmetic(start: int, end: int, count: int, expected: list[int]) -> None:
    assert evenly_spaced(start, end, count) == expected


def test_interval_and_picks_never_list_the_range() -> None:
    assert every_interval(0, FOUR_BILLION - 1, 3, 1) == [0, 1, 2]
    assert every_interval(0, FOUR_BILLION - 1, 4, None) == [
        0,
        1_000_000_000,
        2_000_000_000,
        3_000_000_000,
    ]
    assert every_interval(0, 59, 6, None) == [0, 10, 20, 30, 40, 50]
    assert pick_evenly([3, 9, 27, 81], 2) == [3, 81] and pick_evenly([], 4) == []


def test_a_source_of_four_billion_frames_samples_in_constant_memory(tmp_path: Path) -> None:
    """Whatever count a source ends up with (a big file may plausibly claim billions),
    uniform and interval sampling never build a list of its frames: that was 32 GB here."""
    path = avi_declaring(tmp_path / "clip.avi", 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = MediaSource(path, frame_count=FOUR_BILLION, fps=24.0, width=32, height=32)
    assert source.sample("uniform", 3) == [0, 2_000_000_000, FOUR_BILLION - 1]
    assert source.sample("interval", 3, interval=1) == [0, 1, 2]
    assert source.sample("uniform", 2, start=FOUR_BILLION - 10) == [
        FOUR_BILLION - 10,
        FOUR_BILLION - 1,
    ]
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kb < 50 * 1024  # a list of the range would be gigabytes


@pytest.mark.parametrize("declared", [50_000_000, FOUR_BILLION])
def test_a_declared_count_the_file_cannot_hold_is_counted(tmp_path: Path, declared: int) -> None:
    path = avi_declaring(tmp_path / "claims.avi", declared)
    assert path.stat().st_size < 10_000  # a few KB that claim millions of frames
    with MediaSource.open(path) as source:
        assert source.frame_count == 3
        for strategy in ("uniform", "interval", "keyframes", "scene_change"):
            assert source.sample(strategy, 8) == [0, 1, 2], strategy
        frames = source.read([0, 1, 2])
        levels = [int(np.median(frame.image)) for frame in frames]
        assert levels == sorted(levels) and levels[0] < 20 < 60 < levels[2]  # 0, 40, 80 gray
        with pytest.raises(FramesOutOfRange):
            source.read([3])
