"""pipelines/detecting.py's batching: the first detector call gets one frame (its decode is the
only one nothing overlaps), then `batch_size` at a time; every frame once, in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zooserve.pipelines.detecting import batches


@pytest.mark.parametrize(
    ("numbers", "size", "expected"),
    [
        ([], 4, []),
        ([7], 4, [[7]]),
        ([0, 36, 71, 107, 142, 178, 213, 249], 4, [[0], [36, 71, 107, 142], [178, 213, 249]]),
        ([1, 2, 3], 1, [[1], [2], [3]]),
        ([1, 2], 8, [[1], [2]]),
    ],
)
def test_batches(numbers: list[int], size: int, expected: list[list[int]]) -> None:
    assert batches(numbers, size) == expected


@settings(max_examples=200, derandomize=True, database=None)
@given(numbers=st.lists(st.integers(0, 10_000), unique=True).map(sorted), size=st.integers(1, 9))
def test_batches_property(numbers: list[int], size: int) -> None:
    found = batches(numbers, size)
    assert [n for batch in found for n in batch] == numbers
    assert all(1 <= len(batch) <= size for batch in found)
    assert not found or len(found[0]) == 1
