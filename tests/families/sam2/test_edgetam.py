"""EdgeTAM streaming tracker against a tiny random `EdgeTamVideoModel`: parity with
transformers' whole-video propagation (boxes and points), the output contract and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from transformers import EdgeTamVideoModel

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter
from tests.families.sam2.reference import BOXES, CASES, HEIGHT, WIDTH, reference
from tests.tiny.sam2 import sliding_video
from zooserve.core.errors import InvalidInput
from zooserve.families.kinds import TrackPrompt
from zooserve.families.sam2.edgetam import EdgeTamTracker
from zooserve.tracking.kalman import mask_box

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def edgetam_path(tiny_models: TinyModels) -> Path:
    return tiny_models.path("edgetam")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    return sliding_video(tmp_path_factory.mktemp("edgetam") / "slide.mp4", frames=8)


@pytest.fixture(scope="module")
def tracker(edgetam_path: Path) -> EdgeTamTracker:
    return load_adapter(EdgeTamTracker, edgetam_path)


def run(
    tracker: EdgeTamTracker, frames: list[np.ndarray], prompts: list[TrackPrompt]
) -> list[sv.Detections]:
    session = tracker.start(prompts, WIDTH, HEIGHT)
    return [tracker.step(session, i, frame) for i, frame in enumerate(frames)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_whole_video_propagation(
    tracker: EdgeTamTracker, edgetam_path: Path, video: list[np.ndarray], case: str
) -> None:
    prompts, inputs = CASES[case]
    got = run(tracker, video, prompts)
    expected = reference(EdgeTamVideoModel, edgetam_path, video, **inputs)
    assert len(got) == len(expected) == len(video)
    for objects, (masks, probabilities) in zip(got, expected, strict=True):
        assert list(objects.tracker_id) == [p.object_id for p in prompts]
        np.testing.assert_array_equal(objects.mask, masks)
        np.testing.assert_allclose(objects.confidence, probabilities.reshape(-1), atol=1e-4)
    coverage = [float(objects.mask[i].mean()) for objects in got for i in range(len(objects))]
    assert min(coverage) > 0.02 and max(coverage) < 0.98, "trivial masks prove nothing"


def test_output_contract(tracker: EdgeTamTracker, video: list[np.ndarray]) -> None:
    prompts = [TrackPrompt(1, 0, box=BOXES[1]), TrackPrompt(2, 0, box=BOXES[2])]
    for objects in run(tracker, video[:3], prompts):
        assert list(objects.tracker_id) == [1, 2]
        assert objects.mask is not None
        assert objects.mask.dtype == bool and objects.mask.shape == (2, HEIGHT, WIDTH)
        for mask, xyxy, score in zip(objects.mask, objects.xyxy, objects.confidence, strict=True):
            box = mask_box(mask)
            assert tuple(xyxy) == ((0.0,) * 4 if box is None else tuple(box))
            assert 0.0 <= score <= 1.0


BAD_PROMPTS = {
    "inverted box": TrackPrompt(1, 0, box=(50.0, 50.0, 10.0, 60.0)),
    "box outside": TrackPrompt(1, 0, box=(200.0, 10.0, 260.0, 50.0)),
    "labels mismatch": TrackPrompt(1, 0, points=((10.0, 10.0),), point_labels=(1, 0)),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
def test_bad_prompts_rejected(tracker: EdgeTamTracker, case: str) -> None:
    with pytest.raises(InvalidInput):
        tracker.start([BAD_PROMPTS[case]], WIDTH, HEIGHT)
