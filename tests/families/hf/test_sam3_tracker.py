"""SAM 3 concept tracker against a tiny random `Sam3VideoModel`: parity with transformers'
documented streaming flow (whose session keeps everything), stable ids, bounded session memory,
and geometric prompts refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch
from transformers import Sam3VideoModel, Sam3VideoProcessor

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter
from tests.tiny.sam2 import VIDEO_SIZE, sliding_video
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.sam3_tracker import Sam3ConceptTracker
from zooserve.families.kinds import TrackPrompt

HEIGHT, WIDTH = VIDEO_SIZE
CONCEPTS = ["person", "dog"]
#: Longer than the tiny tracker's memory window (7 frames), so old outputs are dropped.
FRAMES = 12

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sam3_video_path(tiny_models: TinyModels) -> Path:
    return tiny_models.path("sam3_video")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    return sliding_video(tmp_path_factory.mktemp("sam3-video") / "slide.mp4", frames=FRAMES)


@pytest.fixture(scope="module")
def tracker(sam3_video_path: Path) -> Sam3ConceptTracker:
    return load_adapter(Sam3ConceptTracker, sam3_video_path)


@pytest.fixture(scope="module")
def tracked(tracker: Sam3ConceptTracker, video: list[np.ndarray]) -> list[sv.Detections]:
    session = tracker.start_concepts(CONCEPTS, WIDTH, HEIGHT)
    return [tracker.step(session, i, frame) for i, frame in enumerate(video)]


def reference(path: Path, frames: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
    """transformers' documented streaming inference, one frame at a time."""
    processor = Sam3VideoProcessor.from_pretrained(path, local_files_only=True)
    model = Sam3VideoModel.from_pretrained(path, local_files_only=True).eval()
    session = processor.init_video_session(inference_device="cpu")
    processor.add_text_prompt(session, CONCEPTS)
    results = []
    with torch.inference_mode():
        for frame in frames:
            inputs = processor(images=frame, return_tensors="pt")
            outputs = model(inference_session=session, frame=inputs.pixel_values[0])
            results.append(
                processor.postprocess_outputs(
                    session, outputs, original_sizes=inputs.original_sizes
                )
            )
    return results


def test_parity_with_streaming_reference(
    tracked: list[sv.Detections], sam3_video_path: Path, video: list[np.ndarray]
) -> None:
    expected = reference(sam3_video_path, video)
    assert len(tracked) == len(expected) == FRAMES
    for objects, want in zip(tracked, expected, strict=True):
        assert list(objects.tracker_id) == [int(i) + 1 for i in want["object_ids"]]
        np.testing.assert_allclose(objects.xyxy, want["boxes"].numpy(), atol=1e-4)
        np.testing.assert_allclose(objects.confidence, want["scores"].numpy(), atol=1e-4)
        np.testing.assert_array_equal(objects.mask, want["masks"].numpy())
        concepts = {i + 1: text for text, ids in want["prompt_to_obj_ids"].items() for i in ids}
        assert list(objects.data["class_name"]) == [concepts[i] for i in objects.tracker_id]
    coverage = [float(o.mask[i].mean()) for o in tracked for i in range(len(o))]
    # (a mask may come out empty where the per-concept non-overlap rule gives its pixels away)
    assert float(np.mean(coverage)) > 0.05 and max(coverage) < 0.98, "trivial masks prove nothing"


def test_every_concept_is_tracked_under_stable_ids(tracked: list[sv.Detections]) -> None:
    first = list(tracked[0].tracker_id)
    assert first and min(first) >= 1
    assert set(tracked[0].data["class_name"]) == set(CONCEPTS)
    for objects in tracked[1:]:
        assert list(objects.tracker_id) == first  # the same objects, the same ids
        assert objects.mask is not None and objects.mask.shape == (len(first), HEIGHT, WIDTH)
        assert not objects.data["occluded"].any()


def test_session_memory_stays_bounded(tracker: Sam3ConceptTracker, video: list[np.ndarray]) -> None:
    """Past pixels and outputs beyond the memory window are dropped: the session stops growing
    once the window is full (it grew with every frame before)."""
    session = tracker.start_concepts(CONCEPTS, WIDTH, HEIGHT)
    sizes = []
    for i, frame in enumerate(video):
        tracker.step(session, i, frame)
        sizes.append(tracker.session_bytes(session))
    window = tracker.model.config.tracker_config.num_maskmem
    assert sizes[window + 1] < sizes[0] * (window + 1)
    assert max(sizes[window:]) == pytest.approx(min(sizes[window:]), rel=0.05)
    assert len(session.inference.processed_frames) == FRAMES  # transformers counts frames


GEOMETRIC = {
    "mask": TrackPrompt(1, 0, mask=np.ones((HEIGHT, WIDTH), dtype=bool)),
    "box": TrackPrompt(1, 0, box=(10.0, 10.0, 50.0, 50.0)),
}


@pytest.mark.parametrize("kind", sorted(GEOMETRIC))
def test_geometric_prompts_are_refused(tracker: Sam3ConceptTracker, kind: str) -> None:
    with pytest.raises(InvalidInput, match=f"text prompts.*not {kind} prompts"):
        tracker.start([GEOMETRIC[kind]], WIDTH, HEIGHT)


def test_blank_concepts_are_refused(tracker: Sam3ConceptTracker) -> None:
    with pytest.raises(InvalidInput, match="text prompt"):
        tracker.start_concepts(["  "], WIDTH, HEIGHT)
