"""Selection with a concept tracker (SAM 3) present: it sees any text, and on a GPU it is the
preferred tracker for text prompts (issue #19); on the CPU the configured order stands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.pipelines.test_selection import TRACK, manager_for, media, offline_config
from zooserve.manager import ModelManager
from zooserve.pipelines.selection import selected_model, vocabulary

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["media"]  # the module-scoped fixture, shared with test_selection

SAM3 = "sam3-video"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def with_sam3(
    media: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ModelManager]:
    weights = tmp_path_factory.mktemp("sam3-video")  # present on disk: nothing loads here
    config = offline_config(
        media,
        **{SAM3: {"model_id": str(weights), "family": "sam3_tracker", "category": "tracking"}},
    )
    config["tasks"][TRACK]["options"].append(SAM3)  # configured last
    manager = manager_for(config)
    yield manager
    await manager.close()


async def test_a_concept_tracker_sees_any_text(with_sam3: ModelManager) -> None:
    assert vocabulary(with_sam3, SAM3) is None
    # On the CPU the configured order stands; SAM 3 serves what no earlier tracker sees.
    assert selected_model(with_sam3, TRACK, None, ["person"]) == "hog-bytetrack"
    assert selected_model(with_sam3, TRACK, None, ["giraffe"]) == SAM3


async def test_on_a_gpu_sam3_is_preferred_for_text_prompts(
    with_sam3: ModelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU here: only the manager's resolved device says "cuda" (selection reads nothing else).
    monkeypatch.setattr(with_sam3, "device", "cuda:0")
    assert selected_model(with_sam3, TRACK, None, ["person"]) == SAM3
    assert selected_model(with_sam3, TRACK, None, ["face"]) == SAM3
    # Box prompts (no texts) keep the configured order; an explicit model is never replaced.
    assert selected_model(with_sam3, TRACK, None, None) == "hog-bytetrack"
    assert selected_model(with_sam3, TRACK, "mtcnn-bytetrack", ["face"]) == "mtcnn-bytetrack"
