"""Qwen3-VL for /api/summarize (issue #19): the summarize pipeline end to end on the local
engine with a tiny random `Qwen3VLForConditionalGeneration` — frames through its processor
(16 px patches merged 2x2, wrapped in vision start/end tokens), a structured summary from
constrained decoding."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from transformers import AutoProcessor

from tests.conftest import TinyModels
from tests.engines.families import engine_families  # noqa: F401 - fixture
from tests.tiny.qwen3_vl import MERGE
from tests.videos import encode_video
from zooserve.catalog import Config
from zooserve.engines.pool import EnginePool
from zooserve.manager import ModelManager
from zooserve.pipelines.summarize import _shrink, summarize

FPS = 10
MAX_SIDE = 48


@pytest.fixture(scope="module")
def cat_frames() -> list[np.ndarray]:
    cat = np.ascontiguousarray(skimage.data.chelsea()[:96, :128])
    return [np.roll(cat, 4 * i, axis=1) for i in range(20)]


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models: TinyModels,
    cat_frames: list[np.ndarray],
    engine_families: None,  # noqa: F811
) -> EnginePool:
    media = tmp_path_factory.mktemp("media")
    encode_video(media / "cat.mp4", cat_frames, fps=FPS)
    models = {
        "qwen3-vl": {
            "model_id": str(tiny_models.path("qwen3_vl")),
            "family": "local_llm",
            "options": {"max_images": 3, "max_image_side": MAX_SIDE},
        }
    }
    config = Config(
        device="cpu",
        media_root=media,
        models=models,  # type: ignore[arg-type]
        tasks={"video_summarization": {"selected": "qwen3-vl", "options": ["qwen3-vl"]}},  # type: ignore[dict-item]
        engines=[{"name": "local", "kind": "local", "models": ["qwen3-vl"], "max_tokens": 32}],  # type: ignore[list-item]
    )
    return EnginePool(config, ModelManager(config))


def vision_tokens(tiny_models: TinyModels, frame: np.ndarray) -> int:
    """Placeholder tokens Qwen3-VL's processor makes of one shrunk frame (merged patches)."""
    processor = AutoProcessor.from_pretrained(tiny_models.path("qwen3_vl"), local_files_only=True)
    grid = processor.image_processor(images=[_shrink(frame, MAX_SIDE)]).image_grid_thw[0]
    return int(grid.prod()) // MERGE**2


async def test_summary_from_a_random_qwen3_vl_is_structured(
    pool: EnginePool, tiny_models: TinyModels, cat_frames: list[np.ndarray]
) -> None:
    one = await summarize(pool, "cat.mp4", "pet owner", 1, "uniform")
    three = await summarize(pool, "cat.mp4", "pet owner", 3, "uniform")

    assert three.engine == "local" and three.model == "qwen3-vl" and three.structured
    assert three.sampled_frames == [0, 10, 19] and not three.warnings
    assert {k.frame_number for k in three.key_frames} <= {0, 10, 19}
    # Each added frame reaches the model: its merged patches, its vision start/end tokens and
    # its caption. (The frames decode lossily, but their size, hence their grid, is exact.)
    per_image = vision_tokens(tiny_models, cat_frames[0]) + 2
    added = three.usage["prompt_tokens"] - one.usage["prompt_tokens"]
    assert per_image >= 3 and added > 2 * per_image
