"""Checks shared by the SAM2-family trackers: prompts and frames from callers, and the tensor
bytes a session holds (for the manager's ledger)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from zooserve.core.errors import InvalidInput
from zooserve.families.kinds import TrackPrompt


def checked_prompts(prompts: Iterable[TrackPrompt], width: int, height: int) -> list[TrackPrompt]:
    """Valid prompts sorted by frame (stable), or InvalidInput naming the first bad one."""
    if width <= 0 or height <= 0:
        raise InvalidInput(f"video size must be positive, got {width}x{height}")
    prompts = list(prompts)
    if not prompts:
        raise InvalidInput("give at least one prompt (a box, points or a mask at a frame)")
    seen: set[tuple[int, int]] = set()
    for i, prompt in enumerate(prompts):
        details = {"index": i, "object_id": prompt.object_id, "frame": prompt.frame_number}
        key = (prompt.object_id, prompt.frame_number)
        if key in seen:
            raise InvalidInput(
                f"prompt {i}: object {prompt.object_id} is prompted twice at frame "
                f"{prompt.frame_number}; merge the box/points into one prompt",
                details,
            )
        seen.add(key)
        if prompt.frame_number < 0:
            raise InvalidInput(f"prompt {i}: frame_number must be >= 0", details)
        if prompt.mask is not None:
            _check_mask(i, prompt, width, height, details)
        elif prompt.box is None and not prompt.points:
            raise InvalidInput(f"prompt {i}: give a box, points or a mask", details)
        if prompt.box is not None:
            _check_box(i, prompt.box, width, height, details)
        if prompt.points or prompt.point_labels:
            _check_points(i, prompt, details)
    return sorted(prompts, key=lambda p: p.frame_number)


def _check_mask(
    i: int, prompt: TrackPrompt, width: int, height: int, details: dict[str, Any]
) -> None:
    if prompt.box is not None or prompt.points:
        raise InvalidInput(f"prompt {i}: a mask prompt cannot also carry a box or points", details)
    mask = np.asarray(prompt.mask)
    if mask.shape != (height, width):
        raise InvalidInput(
            f"prompt {i}: mask shape {mask.shape} differs from the video's ({height}, {width})",
            details,
        )
    if not mask.astype(bool).any():
        raise InvalidInput(f"prompt {i}: the mask is empty", details)


def _check_box(
    i: int, box: Iterable[float], width: int, height: int, details: dict[str, Any]
) -> None:
    values = [float(v) for v in box]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"prompt {i}: a box is four finite numbers x1, y1, x2, y2", details)
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise InvalidInput(f"prompt {i}: box needs x2 > x1 and y2 > y1, got {values}", details)
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise InvalidInput(
            f"prompt {i}: box {values} lies outside the {width}x{height} video", details
        )


def _check_points(i: int, prompt: TrackPrompt, details: dict[str, Any]) -> None:
    if len(prompt.points) != len(prompt.point_labels):
        raise InvalidInput(
            f"prompt {i}: {len(prompt.points)} points but {len(prompt.point_labels)} labels",
            details,
        )
    for point in prompt.points:
        if len(point) != 2 or not all(math.isfinite(float(v)) for v in point):
            raise InvalidInput(f"prompt {i}: a point is two finite numbers x, y", details)
    if any(label not in (0, 1) for label in prompt.point_labels):
        raise InvalidInput(f"prompt {i}: point labels are 1 (object) or 0 (background)", details)


def checked_frame(session: Any, frame_number: int, image: np.ndarray) -> np.ndarray:
    """The frame as RGB uint8 (H, W, 3) of the session's size, after the last frame."""
    if session.last_frame is not None and frame_number <= session.last_frame:
        raise InvalidInput(
            f"frames must arrive in increasing order: {frame_number} after {session.last_frame}",
            {"frame": frame_number, "last_frame": session.last_frame},
        )
    image = np.asarray(image)
    expected = (session.height, session.width, 3)
    if image.shape != expected or image.dtype != np.uint8:
        raise InvalidInput(
            f"frame {frame_number} must be RGB uint8 of shape {expected}, "
            f"got {image.dtype} {image.shape}",
            {"frame": frame_number},
        )
    return image


def tensor_bytes(root: Any) -> int:
    """Bytes of every torch tensor reachable from `root` through mappings, sequences,
    dataclasses and plain objects' attributes; each storage counted once."""
    seen_objects: set[int] = set()
    seen_storages: set[tuple[str, int]] = set()
    total = 0
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            key = (str(item.device), storage.data_ptr())
            if key not in seen_storages and storage.nbytes():
                seen_storages.add(key)
                total += storage.nbytes()
            continue
        if item is None or isinstance(item, str | bytes | int | float | bool | np.ndarray):
            continue
        if id(item) in seen_objects:
            continue
        seen_objects.add(id(item))
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif dataclasses.is_dataclass(item):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif hasattr(item, "__dict__") and not isinstance(item, type | torch.nn.Module):
            stack.extend(vars(item).values())
    return total
