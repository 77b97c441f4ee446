"""Text in frames (issue 12): RapidOCR's shipped PP-OCR models read a rendered street sign, and
every OCR box in an enrichment is in frame pixels, whether the text was read from a detection's
crop or from the whole frame (they used to come back in crop pixels from crops)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw, ImageFont

from zooserve.catalog import Config
from zooserve.families.base import make_detections
from zooserve.manager import ModelManager
from zooserve.media import Frame
from zooserve.pipelines import enrich_kinds as kinds
from zooserve.pipelines.enrich import enrich_frames

pytestmark = pytest.mark.asyncio(loop_scope="module")
SIGN = (380.0, 200.0, 640.0, 320.0)  # the sign's box in the 640x360 frame
WORDS = {"MAIN STREET": (395, 215), "EXIT 42": (430, 265)}  # text -> top-left where drawn


def street_sign() -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """A 640x360 frame with a green sign at SIGN; and each line's drawn box in frame pixels."""
    image = Image.new("RGB", (640, 360), (70, 90, 60))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    draw.rectangle(SIGN, fill=(20, 90, 40))
    drawn = {}
    for text, where in WORDS.items():
        draw.text(where, text, font=font, fill=(255, 255, 255))
        left, top, right, bottom = draw.textbbox(where, text, font=font)
        drawn[text] = (left, top, right, bottom)
    return np.asarray(image), drawn


def ocr_config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "device": "cpu",
            "base_dir": tmp_path,
            "models": {
                "ocr": {"model_id": "rapidocr:ppocr", "family": "rapidocr", "framework": "onnx"}
            },
            "zoo": {
                "triggers": [
                    # the shipped `text` trigger: the whole frame, every frame
                    {"name": "text", "model": "ocr", "scope": "frame"},
                    # text on a detection's crop (like plate_text on each plate)
                    {"name": "sign_text", "model": "ocr", "when": {"classes": ["sign"]}},
                ]
            },
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def manager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ModelManager]:
    running = ModelManager(ocr_config(tmp_path_factory.mktemp("ocr")))
    yield running
    await running.close()


def assert_lines_in_frame(value: dict, drawn: dict[str, tuple[int, int, int, int]]) -> None:
    assert value["coordinates"] == "frame_pixels"
    assert [line["text"] for line in value["lines"]] == list(WORDS)  # reading order
    assert value["text"] == "MAIN STREET EXIT 42"
    for line in value["lines"]:
        assert line["score"] > 0.9
        x1, y1, x2, y2 = line["box"]
        left, top, right, bottom = drawn[line["text"]]
        # the detector's box hugs the drawn glyphs, in frame pixels
        assert abs(x1 - left) <= 8 and abs(y1 - top) <= 10, (line, drawn)
        assert abs(x2 - right) <= 8 and abs(y2 - bottom) <= 10, (line, drawn)


async def test_text_is_read_in_frame_pixels_from_the_frame_and_from_a_crop(
    manager: ModelManager,
) -> None:
    image, drawn = street_sign()
    sign = make_detections(np.array([SIGN], np.float32), np.array([0.9]), ["sign"], ["sign"])
    result = await enrich_frames(manager, [Frame(0, 0.0, image)], {0: sign})
    assert result.errors == []
    frame = result.frames[0]
    assert_lines_in_frame(frame.enrichments["text"], drawn)
    (sign_values,) = frame.detections.data["enrichments"]  # the sign's row
    from_crop = sign_values["sign_text"]
    assert_lines_in_frame(from_crop, drawn)  # crop pixels would be off by (376, 188)
    for a, b in zip(from_crop["lines"], frame.enrichments["text"]["lines"], strict=True):
        assert np.allclose(a["box"], b["box"], atol=6)


async def test_read_text_serves_callers_outside_the_triggers(manager: ModelManager) -> None:
    image, drawn = street_sign()
    blank = np.full((120, 200, 3), 255, np.uint8)
    sign, empty = await kinds.read_text(manager, "ocr", [image, blank])
    assert_lines_in_frame(sign, drawn)
    assert empty == {"text": "", "score": 0.0, "lines": [], "coordinates": "frame_pixels"}
    trigger = kinds.text_trigger(manager.config.zoo.triggers)
    assert trigger is not None and trigger.model == "ocr"
