"""Prompt checks that protect the tracker: boxes over the frame's edge are clipped, and a
caller's RLE mask is checked against the frame before it is decoded."""

from __future__ import annotations

import numpy as np
import pytest

from zooserve.core.errors import InvalidInput
from zooserve.families.kinds import TrackPrompt
from zooserve.media.rle import encode_mask
from zooserve.pipelines.track_prompts import check_geometry


def test_a_box_over_the_edge_is_clipped_and_one_wholly_outside_is_refused() -> None:
    (prompt,) = check_geometry([TrackPrompt(1, 0, box=(300, -5, 330, 40))], 320, 128, 0, 5)
    assert prompt.box == (300.0, 0.0, 320.0, 40.0)
    with pytest.raises(InvalidInput, match="no part of it is inside"):
        check_geometry([TrackPrompt(1, 0, box=(330, 10, 360, 40))], 320, 128, 0, 5)


def test_an_rle_is_decoded_only_when_its_size_is_the_frames() -> None:
    mask = np.zeros((128, 320), bool)
    mask[10:20, 30:40] = True
    (prompt,) = check_geometry([TrackPrompt(1, 0, mask_rle=encode_mask(mask))], 320, 128, 0, 5)
    assert prompt.mask is not None and prompt.mask.sum() == 100 and prompt.mask_rle is None
    huge = {"size": [30000, 30000], "counts": "0"}  # would decode to 900 MB
    with pytest.raises(InvalidInput, match=r"must be the frame's \[height, width\] = \[128, 320\]"):
        check_geometry([TrackPrompt(1, 0, mask_rle=huge)], 320, 128, 0, 5)
