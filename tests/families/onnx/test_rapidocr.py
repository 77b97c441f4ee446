"""RapidOCR adapter with the PP-OCR models shipped inside the rapidocr wheel: reads a rendered
licence plate, finds text in a real photo, reports boxes in input pixels, never downloads,
estimates memory by model files (memory, unload and corrupt files: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFont

from tests.families.adapters import make_adapter
from zooserve.core.errors import InvalidInput, ModelUnavailable
from zooserve.families.kinds import OcrLine
from zooserve.families.onnx.rapidocr import SHIPPED_MODELS, RapidOcrReader, reading_order

PLATE = "ABC 1234"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
YELLOW, WHITE = (250, 210, 40), (255, 255, 255)


def _shipped_source() -> str:
    source = RapidOcrReader.builtin_source("rapidocr:ppocr")
    assert source is not None, "rapidocr 3.x should ship its PP-OCR models"
    return source


def _reader(source: str, options: dict | None = None) -> RapidOcrReader:
    return make_adapter(
        RapidOcrReader, source, model_id="rapidocr:ppocr", framework="onnx", options=options or {}
    )


@pytest.fixture(scope="module")
def reader() -> RapidOcrReader:
    adapter = _reader(_shipped_source())
    adapter.load()
    return adapter


def render_plate(background: tuple[int, int, int], font_file: Path | None = None) -> np.ndarray:
    """A 320x90 RGB plate: black border and black text on `background`."""
    plate = Image.new("RGB", (320, 90), background)
    draw = ImageDraw.Draw(plate)
    draw.rectangle([2, 2, 317, 87], outline=(0, 0, 0), width=3)
    font = (
        ImageFont.truetype(str(font_file), 54)
        if font_file is not None
        else ImageFont.load_default(size=54)
    )
    draw.text((160, 45), PLATE, fill=(0, 0, 0), font=font, anchor="mm")
    return np.asarray(plate)


def _text(lines: list[OcrLine]) -> str:
    return " ".join(line.text for line in lines)


@pytest.mark.parametrize(
    ("background", "font_file"),
    [
        (YELLOW, None),
        (WHITE, DEJAVU if DEJAVU.is_file() else None),
    ],
)
def test_reads_a_rendered_plate(
    reader: RapidOcrReader, background: tuple[int, int, int], font_file: Path | None
) -> None:
    (lines,) = reader.read([render_plate(background, font_file)])
    assert _text(lines) in {PLATE, PLATE.replace(" ", "")}
    for line in lines:
        assert 0.5 <= line.score <= 1.0
        assert line.box is not None
        x1, y1, x2, y2 = line.box
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 90


def test_boxes_are_in_input_pixels(reader: RapidOcrReader) -> None:
    """A plate pasted at (200, 150) into a larger grey scene is found where it was put."""
    scene = np.full((400, 640, 3), 120, dtype=np.uint8)
    scene[150:240, 200:520] = render_plate(YELLOW)
    (lines,) = reader.read([scene])
    assert _text(lines).replace(" ", "") == PLATE.replace(" ", "")
    boxes = np.array([line.box for line in lines])
    assert boxes[:, 0].min() >= 200 and boxes[:, 2].max() <= 520
    assert boxes[:, 1].min() >= 150 and boxes[:, 3].max() <= 240
    assert boxes[:, 2].max() - boxes[:, 0].min() > 150  # spans most of the plate's text


def test_blank_images_read_nothing(reader: RapidOcrReader) -> None:
    white = np.full((120, 200, 3), 255, dtype=np.uint8)
    black = np.zeros((60, 60, 3), dtype=np.uint8)
    assert reader.read([white, black]) == [[], []]
    assert reader.read([]) == []


def test_finds_text_in_a_real_photo(reader: RapidOcrReader) -> None:
    """scikit-image's text.png: handwritten formulas photographed at an angle."""
    gray = skimage.data.text()
    (lines,) = reader.read([np.stack([gray] * 3, axis=-1)])
    assert lines, "no text found in skimage.data.text()"
    height, width = gray.shape
    for line in lines:
        assert line.text and 0.0 <= line.score <= 1.0
        assert line.box is not None
        assert 0 <= line.box[0] < line.box[2] <= width and 0 <= line.box[1] < line.box[3] <= height


def test_reading_order() -> None:
    def line(text: str, x1: float, y1: float, x2: float, y2: float) -> OcrLine:
        return OcrLine(text, 0.9, (x1, y1, x2, y2))

    lines = [
        line("second-row", 10, 90, 90, 110),
        line("1234", 150, 12, 290, 80),  # one row with ABC although its top is lower
        line("ABC", 30, 10, 150, 78),
        line("first", 5, 0, 40, 8),
        OcrLine("unboxed", 0.5),
    ]
    got = [ln.text for ln in reading_order(lines)]
    assert got == ["first", "ABC", "1234", "second-row", "unboxed"]


def test_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """rapidocr fetches models or alphabets only through DownloadFile.run: make it fatal."""
    from rapidocr.utils.download_file import DownloadFile

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rapidocr tried to download a file")

    monkeypatch.setattr(DownloadFile, "run", classmethod(refuse))
    adapter = _reader(_shipped_source(), {"text_score": 0.3})
    adapter.load()
    (lines,) = adapter.read([render_plate(WHITE)])
    assert _text(lines).replace(" ", "") == PLATE.replace(" ", "")


def test_memory_is_model_file_bytes(reader: RapidOcrReader) -> None:
    assert reader.builtin_source("rapidocr:unknown") is None
    assert reader.torch_modules() == []
    expected = sum((Path(reader.source) / name).stat().st_size for name in SHIPPED_MODELS.values())
    assert reader.memory_bytes() == expected > 10_000_000
    assert RapidOcrReader.estimate_bytes(reader.source, "cpu") == expected


def test_missing_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        _reader(str(tmp_path)).load()


def test_non_rgb_image_rejected(reader: RapidOcrReader) -> None:
    with pytest.raises(InvalidInput):
        reader.read([np.zeros((10, 10), dtype=np.uint8)])
