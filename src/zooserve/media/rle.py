"""COCO run-length encoding of binary masks: `{"size": [height, width], "counts": str}`.

Encoding goes through pycocotools (the format every COCO tool reads). Decoding a caller's mask
first parses and checks the counts here: pycocotools' C decoder trusts its input and returns
garbage (reading past the string) for malformed counts, so nothing unchecked reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from zooserve.core.errors import InvalidInput

#: A COCO RLE as JSON: {"size": [height, width], "counts": compressed string}.
Rle = dict[str, Any]
#: pycocotools counts runs in uint32: no mask may have more pixels than that.
MAX_MASK_PIXELS = 2**32 - 1


def encode_mask(mask: np.ndarray) -> Rle:
    """Bool/0-1 mask (H, W) -> COCO compressed RLE with `counts` as a str (JSON-ready)."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": encoded["counts"].decode()}


def decode_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (compressed string counts, or uncompressed list counts) -> bool mask (H, W).

    Raises InvalidInput when the size or counts are malformed or do not add up to H x W.
    """
    height, width = _size(rle.get("size"))
    if height * width > MAX_MASK_PIXELS:
        raise InvalidInput(
            f"mask size {height}x{width} is larger than {MAX_MASK_PIXELS} pixels",
            {"size": [height, width]},
        )
    counts = rle.get("counts")
    if isinstance(counts, str):
        runs = _parse_counts(counts)
    elif isinstance(counts, Sequence) and all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
    ):
        runs = list(counts)
    else:
        raise InvalidInput(
            "mask counts must be a COCO RLE string or a list of non-negative integers"
        )
    # Checked before pycocotools sees them: its counts are uint32, and it trusts the sum.
    if sum(runs) != height * width:
        raise InvalidInput(
            f"mask counts cover {sum(runs)} pixels but size {height}x{width} has {height * width}",
            {"size": [height, width]},
        )
    if isinstance(counts, str):
        text = counts.encode()
    else:
        text = coco_mask.frPyObjects({"size": [height, width], "counts": runs}, height, width)[
            "counts"
        ]
    decoded = coco_mask.decode({"size": [height, width], "counts": text})
    return np.asarray(decoded, dtype=bool)


def _size(size: Any) -> tuple[int, int]:
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise InvalidInput(f"mask size must be [height, width] positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def _parse_counts(counts: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (maskApi.c `rleFrString`).

    Each run is a little-endian sequence of 5-bit groups stored as chr(48 + group), bit 0x20
    meaning "more groups follow" and bit 0x10 of the last group the sign; from the third run
    on, values are deltas against the run two places earlier.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise InvalidInput("mask counts string ends in the middle of a run")
            group = ord(counts[position]) - 48
            if not 0 <= group < 64:
                raise InvalidInput(
                    f"mask counts has an invalid character {counts[position]!r} at {position}"
                )
            value |= (group & 0x1F) << (5 * shift)
            more = bool(group & 0x20)
            position += 1
            shift += 1
            if not more and group & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise InvalidInput(f"mask counts decode to a negative run at run {len(runs)}")
        runs.append(value)
    return runs
