"""Checks of a tracking request's range and prompts, each failure a 422 that names the prompt.

Rules: prompts are all texts or all geometric (box / points / mask with an object id at a
frame inside the range); boxes and points lie inside the frame; masks have the frame's size;
an object's earliest prompt introduces it (a box, a mask or a positive point), later ones may
only refine it (e.g. negative points), so a refinement of an id never introduced is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from zooserve.core.errors import FramesOutOfRange, InvalidInput
from zooserve.families.kinds import TrackPrompt
from zooserve.media import MediaSource
from zooserve.media.rle import Rle, decode_mask


def split_prompts(
    prompts: Sequence[str | TrackPrompt] | None,
) -> tuple[list[str], list[TrackPrompt]]:
    """(texts, geometric prompts); exactly one of them is non-empty."""
    if not prompts:
        raise InvalidInput(
            'prompts must not be empty: give texts (e.g. ["person"]) or boxes, points or '
            "masks with object ids"
        )
    texts = [p for p in prompts if isinstance(p, str)]
    geometric = [p for p in prompts if isinstance(p, TrackPrompt)]
    if texts and geometric:
        raise InvalidInput("prompts mix texts and boxes/points/masks; send one kind per request")
    if any(not t.strip() for t in texts):
        raise InvalidInput("text prompts must be non-empty strings", {"prompts": texts})
    return [t.strip() for t in texts], geometric


def check_range(
    source: MediaSource, start: int, end: int, max_frames: int | None = None
) -> tuple[int, int]:
    """A non-empty inclusive range inside the video, of at most `max_frames` frames (the bound
    of requests that collect every frame)."""
    if end < start:
        raise InvalidInput(
            f"frame_range is empty: end ({end}) is before start ({start})",
            {"start": start, "end": end},
        )
    source.validate([start, end])  # FramesOutOfRange naming the offenders
    if max_frames is not None and end - start + 1 > max_frames:
        raise InvalidInput(
            f"frame_range covers {end - start + 1} frames; a non-streamed request may cover "
            f"{max_frames} (max_track_frames): stream it (stream: true) or split the range",
            {"frames": end - start + 1, "limit": max_frames},
        )
    return start, end


def check_geometry(
    prompts: Sequence[TrackPrompt], width: int, height: int, start: int, end: int
) -> list[TrackPrompt]:
    """Validated prompts, point labels filled in (1 = positive when none were given)."""
    checked = []
    seen: set[tuple[int, int]] = set()
    introduced: dict[int, int] = {}  # object id -> frame of its introducing prompt
    for index, prompt in enumerate(prompts):
        where = f"prompts[{index}] (object {prompt.object_id})"
        if not start <= prompt.frame_number <= end:
            raise FramesOutOfRange(
                f"{where}: frame {prompt.frame_number} is outside frame_range {start}..{end}",
                {"prompt": index, "frame_number": prompt.frame_number},
            )
        if (prompt.object_id, prompt.frame_number) in seen:
            raise InvalidInput(
                f"{where}: a second prompt for this object at frame {prompt.frame_number}; "
                "combine box, points and mask into one prompt",
                {"prompt": index},
            )
        seen.add((prompt.object_id, prompt.frame_number))
        if prompt.box is None and not prompt.points and prompt.mask is None and not prompt.mask_rle:
            raise InvalidInput(f"{where}: give a box, points or a mask", {"prompt": index})
        box = None if prompt.box is None else _check_box(where, index, prompt.box, width, height)
        labels = _check_points(where, index, prompt, width, height)
        mask = _check_mask(where, index, prompt.mask_rle or prompt.mask, width, height)
        prompt = dataclasses.replace(prompt, box=box, point_labels=labels, mask=mask, mask_rle=None)
        if prompt.box is not None or prompt.mask is not None or 1 in labels:
            first = introduced.get(prompt.object_id, prompt.frame_number)
            introduced[prompt.object_id] = min(first, prompt.frame_number)
        checked.append(prompt)
    for index, prompt in enumerate(checked):
        if introduced.get(prompt.object_id, math.inf) > prompt.frame_number:
            raise InvalidInput(
                f"prompts[{index}] refers to unknown object id {prompt.object_id}: no prompt at "
                f"or before frame {prompt.frame_number} introduces it with a box, a mask or a "
                "positive point",
                {"prompt": index, "object_id": prompt.object_id},
            )
    return checked


def _check_box(
    where: str, index: int, box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """The box clipped to the frame (a box drawn over the frame's edge means what is inside);
    a 422 when it is malformed or no part of it is inside the frame."""
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InvalidInput(f"{where}: box must be 4 finite numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x1 < x2 and y1 < y2):
        raise InvalidInput(f"{where}: box {list(box)} needs x1 < x2 and y1 < y2", {"prompt": index})
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        raise InvalidInput(
            f"{where}: box {list(box)} is outside the {width}x{height} frame (no part of it "
            "is inside)",
            {"prompt": index, "width": width, "height": height},
        )
    return clipped


def _check_points(
    where: str, index: int, prompt: TrackPrompt, width: int, height: int
) -> tuple[int, ...]:
    labels = prompt.point_labels or (1,) * len(prompt.points)
    if len(labels) != len(prompt.points):
        raise InvalidInput(
            f"{where}: {len(prompt.points)} points but {len(labels)} point_labels",
            {"prompt": index},
        )
    if any(label not in (0, 1) for label in labels):
        raise InvalidInput(
            f"{where}: point_labels must be 1 (object) or 0 (background)", {"prompt": index}
        )
    for x, y in prompt.points:
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(
                f"{where}: point ({x}, {y}) is outside the {width}x{height} frame",
                {"prompt": index, "width": width, "height": height},
            )
    return tuple(int(label) for label in labels)


def _check_mask(
    where: str, index: int, mask: np.ndarray | Rle | None, width: int, height: int
) -> np.ndarray | None:
    """The prompt's mask as bool (H, W); an RLE's declared size is checked against the frame
    before it is decoded, so no caller can make the server allocate more than one frame."""
    if mask is None:
        return None
    if isinstance(mask, Mapping):
        size = mask.get("size")
        if size != [height, width] and size != (height, width):
            raise InvalidInput(
                f"{where}: mask size {size!r} must be the frame's [height, width] = "
                f"[{height}, {width}]",
                {"prompt": index, "width": width, "height": height},
            )
        try:
            mask = decode_mask(mask)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}", {"prompt": index}) from exc
    if mask.shape != (height, width):
        raise InvalidInput(
            f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but the frame is {width}x{height}",
            {"prompt": index},
        )
    if not mask.any():
        raise InvalidInput(f"{where}: mask is empty", {"prompt": index})
    return np.asarray(mask, dtype=bool)
