"""YOLO-World (ultralytics `yolov8*-worldv2.pt`): real-time open-vocabulary detection.

ultralytics is AGPL-3.0, so it is an optional extra and is imported only inside `load()`.

The vocabulary lives in the model itself: `WorldModel.txt_feats` (1, n_classes, embed) plus the
head's `nc`. ultralytics' own `set_classes` builds OpenAI CLIP ViT-B/32 for that, which needs the
`clip` package and downloads its weights at run time. Offline, set `options.text_encoder` to a
local transformers CLIP checkpoint (e.g. a saved `openai/clip-vit-base-patch32`); its L2-normalised
projected text embeddings are what `set_classes` would compute.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from zooserve.catalog import ModelSpec
from zooserve.core.errors import InvalidInput, MissingDependency, ModelLoadFailed
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.images import rgb_images
from zooserve.runtimes.ultralytics_runtime import bgr_frames, load_checkpoint, predict

INSTALL_HINT = "yolo_world needs the optional extra: pip install 'zooserve[ultralytics]' (AGPL-3.0)"
CLIP_HINT = (
    "yolo_world needs a text encoder for its prompts: set options.text_encoder to a local "
    "transformers CLIP checkpoint, or pip install git+https://github.com/ultralytics/CLIP.git "
    "(downloads ViT-B/32 weights on first use)"
)


@dataclass
class YoloWorldBatch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    #: BGR uint8 frames, the layout ultralytics expects from numpy input.
    frames: list[np.ndarray]
    prompts: list[str]


class YoloWorldDetector(Detector):
    """ultralytics `YOLOWorld`; every image of a batch gets the same prompts."""

    family = "yolo_world"
    open_vocabulary = True

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.model: Any = None
        self.tokenizer: Any = None
        self.text_encoder: torch.nn.Module | None = None
        self.vocabulary: list[str] | None = None
        # The vocabulary is model state: changing it and predicting must not interleave.
        self.lock = threading.Lock()

    def load(self) -> None:
        """Load the checkpoint (and the optional local text encoder); any failure propagates."""
        model = load_checkpoint("YOLOWorld", self.source, INSTALL_HINT, what="YOLO-World")
        self.lock = threading.Lock()  # `unload()` clears every attribute, this one too
        model.model.to(self.device).eval()
        encoder_path = self.spec.options.get("text_encoder")
        if encoder_path:
            from transformers import AutoTokenizer, CLIPTextModelWithProjection

            self.tokenizer = AutoTokenizer.from_pretrained(encoder_path, local_files_only=True)
            encoder: torch.nn.Module = CLIPTextModelWithProjection.from_pretrained(
                encoder_path, dtype=self.dtype, local_files_only=True
            )
            embed = int(model.model.txt_feats.shape[-1])
            config: Any = encoder.config
            if config.projection_dim != embed:
                raise ModelLoadFailed(
                    f"text encoder projects to {config.projection_dim} dims, "
                    f"the YOLO-World head expects {embed}",
                    {"text_encoder": str(encoder_path)},
                )
            self.text_encoder = encoder.to(self.device).eval()
        self.model = model
        self.vocabulary = None

    def torch_modules(self) -> list[torch.nn.Module]:
        modules: list[torch.nn.Module] = []
        if self.model is not None:
            modules.append(self.model.model)
        if self.text_encoder is not None:
            modules.append(self.text_encoder)
        return modules

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.detect([np.zeros((32, 32, 3), dtype=np.uint8)], ["object"], threshold=1.0)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> YoloWorldBatch:
        """Validate, then flip RGB to BGR: ultralytics treats numpy input as OpenCV frames."""
        if not prompts:
            raise InvalidInput("YOLO-World is open-vocabulary: give at least one text prompt")
        if not all(isinstance(p, str) for p in prompts):
            raise InvalidInput("prompts must be strings", {"prompts": [str(p) for p in prompts]})
        return YoloWorldBatch(frames=bgr_frames(rgb_images(images)), prompts=list(prompts))

    def forward(self, batch: YoloWorldBatch) -> list[Any]:
        """Set the vocabulary (cached) and predict with NMS; thresholding comes later."""
        if not batch.frames:
            return []
        assert self.model is not None, "load() first"
        with self.lock:
            self._set_vocabulary(batch.prompts)
            # conf=0: keep every box NMS keeps, so `postprocess` alone applies the threshold.
            return predict(self.model, batch.frames, self.device, conf=0.0)

    def postprocess(
        self, raw: list[Any], batch: YoloWorldBatch, threshold: float
    ) -> list[sv.Detections]:
        """Boxes are already in input pixels (ultralytics rescales and clips); keep > threshold."""
        detections = []
        for result in raw:
            boxes = result.boxes
            scores = boxes.conf.float().cpu().numpy()
            keep = scores > threshold
            xyxy = boxes.xyxy.float().cpu().numpy()[keep]
            labels = [batch.prompts[int(i)] for i in boxes.cls.cpu().numpy()[keep]]
            detections.append(make_detections(xyxy, scores[keep], labels, batch.prompts))
        return detections

    def _set_vocabulary(self, prompts: list[str]) -> None:
        """Recompute text embeddings only when the prompt list changes."""
        if prompts == self.vocabulary:
            return
        if self.text_encoder is None:
            # Checked up front: ultralytics would otherwise try to pip-install it mid-request.
            if importlib.util.find_spec("clip") is None:
                raise MissingDependency(CLIP_HINT, {"package": "clip"})
            self.model.set_classes(prompts)
        else:
            world = self.model.model
            world.txt_feats = self._encode(prompts)
            world.model[-1].nc = len(prompts)
            world.names = list(prompts)
            self.model.predictor = None  # as YOLOWorld.set_classes: rebuild with the new names
        self.vocabulary = list(prompts)

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        """(1, n, embed) unit-norm text embeddings, as ultralytics' CLIP.encode_text returns."""
        assert self.text_encoder is not None
        inputs = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            embeds = self.text_encoder(**inputs.to(self.device)).text_embeds.float()
        return torch.nn.functional.normalize(embeds, dim=-1).reshape(1, len(prompts), -1)
