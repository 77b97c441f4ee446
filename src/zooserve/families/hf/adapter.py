"""The base of the transformers families: one processor and one model from a local checkpoint.

A family names its two classes (`processor_class`, `model_class`: looked up in transformers at
load time, so importing a family imports no model code), checks and reads the loaded checkpoint
in `configure`, and implements its kind. The rest is this base's: loading from the local source
only (straight to the device on CUDA), the move to the device in eval mode, the torch modules
the manager counts, and the blank image a warm-up runs on. A new family is, for example::

    class RtDetrDetector(TransformersAdapter, Detector):
        family = "rt_detr"
        processor_class = "AutoImageProcessor"
        model_class = "RTDetrV2ForObjectDetection"

The base comes first, so its `load` and `torch_modules` serve the kind's contract.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from zooserve.catalog import ModelSpec
from zooserve.families.base import ModelAdapter
from zooserve.runtimes.transformers_runtime import load_pretrained


class TransformersAdapter(ModelAdapter):
    """A transformers checkpoint: `self.processor` and `self.model` (None until `load`)."""

    #: Names in the `transformers` namespace, e.g. "Owlv2Processor", "Owlv2ForObjectDetection".
    processor_class: ClassVar[str] = "AutoProcessor"
    model_class: ClassVar[str]

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        # Typed Any: transformers' decorated `PreTrainedModel.to` confuses mypy.
        self.processor: Any = None
        self.model: Any = None

    def load(self) -> None:
        """Load the processor and weights from `self.source` only; any failure propagates."""
        import transformers

        processor, model = load_pretrained(
            getattr(transformers, self.processor_class),
            getattr(transformers, self.model_class),
            self.source,
            self.dtype,
            device=self.device,
        )
        self.configure(model, processor)
        self.model = model.to(self.device).eval()
        self.processor = processor

    def configure(self, model: Any, processor: Any) -> None:
        """Check the loaded checkpoint and keep what the family reads from it (its config);
        raise (e.g. ModelLoadFailed) to refuse it. Runs before the model moves to the device."""

    def torch_modules(self) -> list[torch.nn.Module]:
        model = getattr(self, "model", None)
        return [model] if model is not None else []


def blank_image(height: int = 32, width: int = 32) -> np.ndarray:
    """A black RGB uint8 image (height, width, 3): the input of a warm-up forward."""
    return np.zeros((height, width, 3), dtype=np.uint8)
