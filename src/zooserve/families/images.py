"""Input checks shared by the families that take RGB images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Image


def rgb_images(images: Sequence[Image], noun: str = "image") -> list[np.ndarray]:
    """Each image as an array, checked to be RGB (H, W, 3) with pixels.

    InvalidInput names the first bad one as "`noun` <index>" (e.g. "frame 2" for a video clip).
    """
    frames = [np.asarray(image) for image in images]
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise InvalidInput(
                f"{noun} {i} must be RGB (H, W, 3), got shape {frame.shape}", {"index": i}
            )
    return frames


def image_sizes(frames: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(height, width) of each image: the `target_sizes` transformers' post-processors take."""
    return [(int(frame.shape[0]), int(frame.shape[1])) for frame in frames]


def group_by_size(sizes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """Indices of the images of each size, in first-seen order: one stacked batch per size."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    return groups
