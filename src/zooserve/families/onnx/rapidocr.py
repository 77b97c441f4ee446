"""RapidOCR (PP-OCR det + cls + rec as ONNX): the offline stand-in for PaddleOCR.

`rapidocr` 3.x ships PP-OCRv6 small detection and recognition models and the PP-OCR v2.0
angle classifier inside its wheel (`rapidocr/models/`, Apache-2.0). Its engine downloads a model
only when no `model_path` is given, and reads the recognition alphabet from the ONNX metadata,
so passing the three paths explicitly (as `load` does) means it never touches the network.

model_id `rapidocr:ppocr` means the shipped models; a local directory holding the files named by
`options.det_model` / `cls_model` / `rec_model` works too. Other options: `text_score` (drop
lines read with less confidence, default 0.5), `use_angle_cls` (default true),
`det_limit_side_len` / `det_limit_type` (default 64 / "min", PaddleOCR 3's own defaults: only
images whose short side is under 64 px are enlarged; rapidocr's 736 / "min" upscales every plate
crop ~5x, which is slower and missed handwriting on skimage's text.png here).

If the real `paddleocr` package were installed it could be preferred for PaddleOCR's server
models; it is not a dependency (it pulls paddlepaddle, ~1 GB) and this family does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ModelUnavailable
from zooserve.families.base import Image
from zooserve.families.images import rgb_images
from zooserve.families.kinds import OcrLine, OcrReader
from zooserve.families.shipped import ShippedWeights
from zooserve.runtimes.onnx_runtime import (
    claim_bytes,
    cuda_options,
    device_index,
    execution_providers,
    require_device,
    warmup_batch_size,
)

#: stage -> file name of the model rapidocr 3.x ships for it
SHIPPED_MODELS = {
    "det": "PP-OCRv6_det_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
}
#: `rapidocr/models/` of the installed wheel (found without importing it). ONNX Runtime keeps
#: the fp32 weights on either device, so the default models' file bytes are the estimate.
SHIPPED = ShippedWeights("rapidocr:ppocr", "rapidocr", "models", (*SHIPPED_MODELS.values(),))


def reading_order(lines: list[OcrLine]) -> list[OcrLine]:
    """Sort lines top to bottom, and left to right within a row.

    A line joins the current row when its vertical centre falls inside the row's first line,
    so words of one plate ("ABC", "1234") stay together even if their tops differ a little.
    """
    boxed = sorted((line for line in lines if line.box is not None), key=_centre_y)
    rows: list[list[OcrLine]] = []
    for line in boxed:
        anchor = rows[-1][0].box if rows else None
        if anchor is not None and anchor[1] <= _centre_y(line) <= anchor[3]:
            rows[-1].append(line)
        else:
            rows.append([line])
    ordered = [ln for row in rows for ln in sorted(row, key=lambda ln: ln.box[0] if ln.box else 0)]
    return ordered + [line for line in lines if line.box is None]


def _centre_y(line: OcrLine) -> float:
    assert line.box is not None
    return (line.box[1] + line.box[3]) / 2


class RapidOcrReader(OcrReader):
    """PP-OCR through rapidocr's ONNX Runtime engine.

    Concurrent calls share the engine: ONNX Runtime sessions are thread-safe and rapidocr keeps
    no per-call state (its detector rebuilds an identical preprocess op on every call).
    """

    family = "rapidocr"
    shipped = SHIPPED

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.engine: Any = None
        self.model_paths: dict[str, Path] = {}

    def load(self) -> None:
        """Open the three ONNX sessions now (rapidocr would otherwise open them lazily)."""
        from rapidocr import RapidOCR

        options = self.spec.options
        paths = {
            stage: Path(self.source) / str(options.get(f"{stage}_model", default))
            for stage, default in SHIPPED_MODELS.items()
        }
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ModelUnavailable(f"OCR model files not found: {missing}", {"missing": missing})
        use_cuda = self.device.startswith("cuda")
        if use_cuda:  # refuses a CUDA device when this ONNX Runtime build has no CUDA provider
            execution_providers(self.device, _available_providers())
        arena = cuda_options(self.device, claim_bytes(self.spec.vram_mb))
        del arena["device_id"]
        params = {
            "Global.log_level": str(options.get("log_level", "error")),
            "Global.text_score": float(options.get("text_score", 0.5)),
            "Global.use_cls": bool(options.get("use_angle_cls", True)),
            "Det.model_path": str(paths["det"]),
            "Cls.model_path": str(paths["cls"]),
            "Rec.model_path": str(paths["rec"]),
            "Det.limit_side_len": int(options.get("det_limit_side_len", 64)),
            "Det.limit_type": str(options.get("det_limit_type", "min")),
            "EngineConfig.onnxruntime.use_cuda": use_cuda,
            "EngineConfig.onnxruntime.cuda_ep_cfg.device_id": device_index(self.device),
            # each session's arena grows by what it asks, up to the model's claim
            **{f"EngineConfig.onnxruntime.cuda_ep_cfg.{k}": v for k, v in arena.items()},
        }
        engine = RapidOCR(params=params)
        # rapidocr opens each session on first use; open them here so a broken file fails the
        # load (not a request) and the memory is held from the start. Private but stable in 3.x.
        engine._load_det_model()
        engine._load_cls_model()
        engine._load_rec_model()
        stages: list[Any] = [engine.text_det, engine.text_cls, engine.text_rec]
        for stage in stages:
            require_device(self.spec.name, self.device, stage.session.session.get_providers())
        self.engine = engine
        self.model_paths = paths

    def memory_bytes(self) -> int:
        """Bytes of the ONNX model files in use (ONNX Runtime holds them as fp32 weights)."""
        return sum(p.stat().st_size for p in (self.model_paths or {}).values())

    def warmup(self) -> None:
        blank = np.full((48, 160, 3), 255, dtype=np.uint8)
        self.read([blank] * warmup_batch_size(self.spec.options))

    def read(self, images: Sequence[Image]) -> list[list[OcrLine]]:
        """Text lines per RGB image, in reading order; box is the line's xyxy in the image."""
        return [self._read_one(frame) for frame in rgb_images(images)]

    def _read_one(self, rgb: np.ndarray) -> list[OcrLine]:
        assert self.engine is not None, "load() first"
        # rapidocr takes numpy input as OpenCV BGR. Never pass per-call overrides to the engine:
        # they are written into its shared config and would leak into concurrent calls.
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR)
        result = self.engine(bgr)
        texts, scores, boxes = result.txts, result.scores, result.boxes
        if not texts or boxes is None:
            return []
        height, width = rgb.shape[:2]
        lines = []
        for text, score, polygon in zip(texts, scores, boxes, strict=True):
            points = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
            x1, y1 = points.min(axis=0)
            x2, y2 = points.max(axis=0)
            box = (
                float(np.clip(x1, 0, width)),
                float(np.clip(y1, 0, height)),
                float(np.clip(x2, 0, width)),
                float(np.clip(y2, 0, height)),
            )
            lines.append(OcrLine(text=str(text), score=float(score), box=box))
        return reading_order(lines)


def _available_providers() -> list[str]:
    """onnxruntime-gpu is needed for CUDA; the CPU wheel (installed here) has no CUDA provider."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())
