"""Which earlier frames a SAM2 object attends to (pure Python; frames are SAM2 frame indices).

SAM2 conditions each frame on its prompt frames plus a memory bank of recent frames: memory
features of the last `num_maskmem - 1` frames, each with the temporal encoding of its distance,
and object pointers of the last `max_object_pointers - 1` frames. SAMURAI and SAM2Long keep the
bank's size but fill it with the most recent *reliable* frames instead of the most recent ones;
a frame's reliability is decided once, when it is tracked (`eligible`), by each method's rule.
Both reference implementations then give those frames the temporal slots 1, 2, ... by recency
rank (not by true distance), and always keep the frame just before the current one.
"""

from __future__ import annotations

from collections.abc import Mapping


def reliable_frames(frame: int, eligible: Mapping[int, bool], count: int) -> list[int]:
    """The newest `count` eligible frames before `frame`, plus the frame just before it
    (always attended, even when not eligible), newest first."""
    earlier = sorted((f for f in eligible if f < frame), reverse=True)
    chosen: list[int] = []
    for candidate in earlier:
        if len(chosen) >= count:
            break
        if eligible[candidate]:
            chosen.append(candidate)
    if earlier and earlier[0] == frame - 1 and frame - 1 not in chosen:
        chosen.insert(0, frame - 1)
    return chosen


def ranked_slots(newest_first: list[int], slots: int) -> list[tuple[int, int]]:
    """(slot, frame) pairs giving the i-th newest frame slot i (at most `slots`), oldest first."""
    ranked = list(enumerate(newest_first[:slots], start=1))
    return ranked[::-1]


def frames_to_keep(frame: int, eligible: Mapping[int, bool], window: int, count: int) -> set[int]:
    """Frames any later step can still select: the last `window` ones and, beyond them, the
    newest `count` eligible ones. Everything else can be dropped from a session for good."""
    keep = {f for f in eligible if f > frame - window}
    keep.update(reliable_frames(frame + 1, eligible, count))
    return keep
