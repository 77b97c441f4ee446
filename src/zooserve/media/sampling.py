"""Choosing frames to sample: pure arithmetic over frame numbers, plus the scene-change scan.

Nothing here builds a list as long as the range it samples from: a range is as long as a file's
header claims (up to 4e9 frames in an AVI), and a sample is only as long as the caller asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from zooserve.media.containers import frame_number, open_container, seek

SAMPLING_STRATEGIES = ("uniform", "interval", "keyframes", "scene_change")


def evenly_spaced(start: int, end: int, count: int) -> list[int]:
    """Up to `count` frame numbers spread evenly over start..end (inclusive), both ends kept.

    Computed from the span, never from a list of it; floor(x + .5) keeps the picks distinct.
    """
    span = end - start + 1
    if count >= span:
        return list(range(start, end + 1))
    if count == 1:
        return [start]
    offsets = np.floor(np.linspace(0, span - 1, count) + 0.5).astype(np.int64)
    return [start + int(offset) for offset in offsets]


def pick_evenly(items: Sequence[int], count: int) -> list[int]:
    """`count` of `items` spread evenly, first and last kept."""
    return [items[i] for i in evenly_spaced(0, len(items) - 1, count)] if items else []


def every_interval(start: int, end: int, count: int, interval: int | None) -> list[int]:
    """The first `count` of every `interval`-th frame from `start` (default: about `count` in
    all); a range object is sliced, never listed whole."""
    step = interval or max(1, (end - start + 1) // count)
    return list(range(start, end + 1, step)[:count])


def scene_changes(
    path: Path,
    fps: float,
    start: int,
    end: int,
    count: int,
    check_open: Callable[[], None],
) -> list[int]:
    """`start` plus the count-1 frames that differ most from their predecessor (mean absolute
    difference of 64x36 grayscale thumbnails); `check_open` stops the scan with its request."""
    scores: list[tuple[float, int]] = []
    prev: np.ndarray | None = None
    with open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in seek(container, stream, fps, start):
            check_open()
            n = frame_number(frame.pts, stream, fps, default=start)
            if n > end:
                break
            if n < start:
                continue
            cur = frame.reformat(width=64, height=36, format="gray").to_ndarray().astype(np.int16)
            if prev is not None and n > start:
                scores.append((float(np.abs(cur - prev).mean()), n))
            prev = cur
    scores.sort(key=lambda s: (-s[0], s[1]))
    return sorted([start, *(n for _, n in scores[: count - 1])])
