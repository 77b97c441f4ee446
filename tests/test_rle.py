"""COCO RLE: masks survive encode -> JSON -> decode exactly, and malformed input is a 422."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from zooserve.core.errors import InvalidInput
from zooserve.media.rle import decode_mask, encode_mask


def masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    ring = np.zeros((48, 64), bool)
    ring[8:40, 10:50] = True
    ring[16:32, 20:40] = False
    return [
        rng.random((37, 53)) > 0.6,  # noise: thousands of short runs, odd sizes
        ring,
        np.zeros((5, 7), bool),
        np.ones((5, 7), bool),
        np.ones((1, 1), bool),
        rng.random((480, 640)) > 0.999,  # long runs: multi-group varints
    ]


@pytest.mark.parametrize("mask", masks(), ids=["noise", "ring", "empty", "full", "1x1", "sparse"])
def test_round_trip_through_json(mask: np.ndarray) -> None:
    rle = json.loads(json.dumps(encode_mask(mask)))
    assert rle["size"] == [mask.shape[0], mask.shape[1]]  # COCO order: height, width
    assert isinstance(rle["counts"], str)
    decoded = decode_mask(rle)
    assert decoded.dtype == bool and decoded.shape == mask.shape
    assert np.array_equal(decoded, mask)
    # Any COCO tool reads it: pycocotools decodes and measures the same mask.
    assert int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()})) == int(
        mask.sum()
    )


def test_uncompressed_counts_are_accepted() -> None:
    # Column-major runs, starting with background: 7 off, 2 on, 3 off, 2 on, 21 off.
    mask = decode_mask({"size": [5, 7], "counts": [7, 2, 3, 2, 21]})
    expected = np.zeros((7, 5), bool)  # transposed: runs go down columns
    expected.flat[7:9] = True
    expected.flat[12:14] = True
    assert np.array_equal(mask, expected.T)


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [5, 7], "counts": ""}, "cover 0 pixels"),
        ({"size": [5, 7], "counts": "zz"}, "invalid character"),
        ({"size": [5, 7], "counts": "0o"}, "ends in the middle"),
        ({"size": [5, 7], "counts": "1111"}, "cover 5 pixels"),  # 1, 1, 1, 1 + 1 (delta)
        ({"size": [5], "counts": "0"}, "size must be"),
        ({"size": [0, 7], "counts": "0"}, "size must be"),
        ({"size": [5, 7], "counts": [1, -2]}, "non-negative"),
        ({"size": [5, 7], "counts": 3}, "non-negative"),
    ],
)
def test_malformed_rle_is_invalid_input(rle: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_mask(rle)


def test_encode_needs_a_2d_mask() -> None:
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 3, 4), bool))
