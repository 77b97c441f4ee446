"""The summarize pipeline: prompt, frame limits, key-frame reconciliation, and a full run on the
local engine with a tiny random Llava (constrained decoding: always a structured summary)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from tests.conftest import TinyModels
from tests.engines.families import engine_families  # noqa: F401 - fixture
from tests.videos import encode_video
from zooserve.catalog import Config
from zooserve.core.errors import InvalidInput
from zooserve.engines.pool import EnginePool
from zooserve.manager import ModelManager
from zooserve.pipelines.summarize import (
    KeyFrame,
    KeyFrameOut,
    _shrink,
    build_messages,
    reconcile_key_frames,
    summarize,
)

FPS = 10


def test_key_frames_snap_to_sampled_frames_once_each() -> None:
    proposed = [
        KeyFrameOut(frame_number=31, description="late"),
        KeyFrameOut(frame_number=4, description=" early "),
        KeyFrameOut(frame_number=1, description="early again"),  # 0 is taken: first one wins
        KeyFrameOut(frame_number=999, description="beyond the end"),
    ]
    assert reconcile_key_frames(proposed, [0, 10, 20, 30], FPS) == [
        KeyFrame(0, 0.0, "early"),
        KeyFrame(30, 3.0, "late"),
    ]


def test_frames_are_shrunk_not_enlarged() -> None:
    image = np.zeros((100, 400, 3), np.uint8)
    assert _shrink(image, 200).shape == (50, 200, 3)
    assert _shrink(image, 800) is image


def test_prompt_carries_persona_and_one_caption_per_frame() -> None:
    images = [np.zeros((4, 4, 3), np.uint8)] * 2
    system, user = build_messages("  night-shift guard ", images, [0, 15], FPS)
    assert "Persona: night-shift guard\n" in system.text and not system.images
    assert user.captions == ("Frame 0 at 0.00 s:", "Frame 15 at 1.50 s:")
    assert len(user.images) == 2 and "2 frames" in user.text


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models: TinyModels,
    engine_families: None,  # noqa: F811
) -> EnginePool:
    media = tmp_path_factory.mktemp("media")
    cat = skimage.data.chelsea()[:96, :128]
    encode_video(media / "cat.mp4", (np.roll(cat, 4 * i, axis=1) for i in range(20)), fps=FPS)
    models = {
        "vlm": {
            "model_id": str(tiny_models.path("llava")),
            "family": "local_llm",
            "options": {"max_images": 3, "max_image_side": 48},
        }
    }
    config = Config(
        device="cpu",
        media_root=media,
        models=models,  # type: ignore[arg-type]
        tasks={"video_summarization": {"selected": "vlm", "options": ["vlm"]}},  # type: ignore[dict-item]
        engines=[{"name": "local", "kind": "local", "models": ["vlm"], "max_tokens": 32}],  # type: ignore[list-item]
    )
    return EnginePool(config, ModelManager(config))


async def test_summary_from_a_random_local_vlm_is_structured(pool: EnginePool) -> None:
    result = await summarize(pool, "cat.mp4", "pet owner", 3, "uniform")
    assert result.engine == "local" and result.model == "vlm" and result.structured
    assert result.sampled_frames == [0, 10, 19] and not result.warnings
    assert {k.frame_number for k in result.key_frames} <= {0, 10, 19}
    assert all(k.timestamp == k.frame_number / FPS for k in result.key_frames)
    assert result.usage["prompt_tokens"] > 3 * 16  # three images of 16 tokens each


@pytest.mark.parametrize(
    ("persona", "count", "strategy", "message"),
    [
        (" ", 2, "uniform", "persona_context must not be empty"),
        ("guard", 0, "uniform", "between 1 and 3"),
        ("guard", 4, "uniform", "between 1 and 3"),  # the model's max_images
        ("guard", 2, "random", "unknown sampling strategy 'random'"),
    ],
)
async def test_bad_requests(
    pool: EnginePool, persona: str, count: int, strategy: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await summarize(pool, "cat.mp4", persona, count, strategy)


async def test_text_in_frames_holds_what_ocr_reads(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models: TinyModels,
    engine_families: None,  # noqa: F811
) -> None:
    """The zoo's whole-frame `text` trigger (real RapidOCR) feeds `text_in_frames`, whatever
    the (random, tiny) language model says."""
    from PIL import Image, ImageDraw, ImageFont

    media = tmp_path_factory.mktemp("sign-media")
    sign = Image.new("RGB", (320, 120), (20, 70, 30))
    ImageDraw.Draw(sign).text((20, 35), "EXIT 42", font=ImageFont.load_default(size=40))
    encode_video(media / "sign.mp4", (np.asarray(sign),) * 4, fps=FPS)
    models = {
        "vlm": {
            "model_id": str(tiny_models.path("llava")),
            "family": "local_llm",
            "options": {"max_images": 2, "max_image_side": 48},
        },
        "ocr": {
            "model_id": "rapidocr:ppocr",
            "family": "rapidocr",
            "framework": "onnx",
            "category": "ocr",
        },
    }
    config = Config(
        device="cpu",
        media_root=media,
        models=models,  # type: ignore[arg-type]
        tasks={"video_summarization": {"selected": "vlm", "options": ["vlm"]}},  # type: ignore[dict-item]
        engines=[{"name": "local", "kind": "local", "models": ["vlm"], "max_tokens": 16}],  # type: ignore[list-item]
        zoo={"triggers": [{"name": "text", "model": "ocr", "scope": "frame"}]},  # type: ignore[arg-type]
    )
    manager = ModelManager(config)
    result = await summarize(EnginePool(config, manager), "sign.mp4", "driver", 2, "uniform")
    assert "EXIT 42" in result.text_in_frames
    await manager.close()
