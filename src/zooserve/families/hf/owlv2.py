"""OWLv2 (google/owlv2-*): open-vocabulary detection from free-text queries via transformers.

OWLv2's processor pads each image to a square (bottom/right) before resizing, so predicted boxes
are relative to that padded square. `post_process_object_detection` takes the original
`(height, width)` per image and scales by `max(height, width)` itself; boxes can then reach into
the padding, hence the final clip to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import supervision as sv
import torch

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import image_sizes, rgb_images
from zooserve.runtimes.transformers_runtime import to_device


@dataclass
class Owlv2Batch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    inputs: dict[str, torch.Tensor]
    #: Original (height, width) of each image: the documented `target_sizes`.
    sizes: list[tuple[int, int]]
    prompts: list[str]


class Owlv2Detector(TransformersAdapter, Detector):
    """Transformers `Owlv2ForObjectDetection`; every image of a batch gets the same prompts."""

    family = "owlv2"
    open_vocabulary = True
    processor_class = "Owlv2Processor"
    model_class = "Owlv2ForObjectDetection"

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.detect([blank_image()], ["object"], threshold=1.0)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> Owlv2Batch:
        """Tokenise the prompts once per image and pad/resize the images (CPU only)."""
        if not prompts:
            raise InvalidInput("OWLv2 is open-vocabulary: give at least one text prompt")
        if not all(isinstance(p, str) for p in prompts):
            raise InvalidInput("prompts must be strings", {"prompts": [str(p) for p in prompts]})
        prompts = list(prompts)
        frames = rgb_images(images)
        if not frames:
            return Owlv2Batch(inputs={}, sizes=[], prompts=prompts)
        # truncation: the text model has a fixed number of positions (16 for released weights);
        # longer prompts would otherwise crash the forward.
        inputs = self.processor(
            text=[prompts] * len(frames), images=frames, return_tensors="pt", truncation=True
        )
        return Owlv2Batch(inputs=dict(inputs), sizes=image_sizes(frames), prompts=prompts)

    def forward(self, batch: Owlv2Batch) -> dict[str, torch.Tensor] | None:
        """Run the model; keep only logits and boxes so the embeddings are freed at once."""
        if not batch.inputs:
            return None
        assert self.model is not None, "load() first"
        outputs = self.model(**to_device(batch.inputs, self.device, self.dtype))
        return {"logits": outputs.logits, "pred_boxes": outputs.pred_boxes}

    def postprocess(
        self, raw: dict[str, torch.Tensor] | None, batch: Owlv2Batch, threshold: float
    ) -> list[sv.Detections]:
        """transformers' own post-processing (fp32), then labels from prompts and a clip."""
        if raw is None:
            return []
        from transformers.models.owlv2.modeling_owlv2 import Owlv2ObjectDetectionOutput

        outputs = Owlv2ObjectDetectionOutput(
            logits=raw["logits"].float(), pred_boxes=raw["pred_boxes"].float()
        )
        results = self.processor.image_processor.post_process_object_detection(
            outputs=outputs, threshold=threshold, target_sizes=batch.sizes
        )
        detections = []
        for result, (height, width) in zip(results, batch.sizes, strict=True):
            boxes = result["boxes"].cpu().numpy().astype(np.float32)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
            scores = result["scores"].cpu().numpy()
            labels = [batch.prompts[i] for i in result["labels"].tolist()]
            detections.append(make_detections(boxes, scores, labels, vocabulary=batch.prompts))
        return detections
