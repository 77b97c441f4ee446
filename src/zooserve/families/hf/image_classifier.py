"""Fixed-vocabulary image classifiers (ViT, ResNet, ConvNeXt, ...) through transformers.

Any `AutoModelForImageClassification` checkpoint with its `AutoImageProcessor` works; the class
names come from the checkpoint's `config.id2label`. The zoo uses these for violence (2 classes),
weather (5), age groups, gender, vehicle type (ResNet-50, 11) and pets (ResNet-18).

Scores follow transformers' image-classification pipeline: softmax over classes, or an
independent sigmoid per class when `config.problem_type == "multi_label_classification"` (or
the head has a single output), so multi-label scores need not sum to 1.

Options (`models.<name>.options`): `top_k` (keep the k best classes per image, default all),
`batch_size` (images per forward pass, default 32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ConfigError, InvalidInput, ModelLoadFailed
from zooserve.families.base import Image
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import rgb_images
from zooserve.families.kinds import Classifier
from zooserve.runtimes.transformers_runtime import to_device

DEFAULT_BATCH_SIZE = 32


def positive_int_option(spec: ModelSpec, key: str, default: int | None) -> int | None:
    """`spec.options[key]` as a positive int (or `default` when absent); bad values name the key."""
    value = spec.options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"models.{spec.name}.options.{key}: expected a positive integer, got {value!r}",
            {"model": spec.name, "option": key},
        )
    return value


def ranked(labels: Sequence[str], scores: np.ndarray, top_k: int | None = None) -> dict[str, float]:
    """{label: score} sorted high to low (ties keep label order), cut to the `top_k` best."""
    order = sorted(range(len(labels)), key=lambda i: -float(scores[i]))
    if top_k is not None:
        order = order[:top_k]
    return {labels[i]: float(scores[i]) for i in order}


class ClassifierOptions:
    """The `top_k` and `batch_size` options, shared by the classifier families.

    Options are read from `spec` (which survives `unload`), so a reload sees them again.
    """

    spec: ModelSpec

    @property
    def top_k(self) -> int | None:
        return positive_int_option(self.spec, "top_k", None)

    @property
    def batch_size(self) -> int:
        return positive_int_option(self.spec, "batch_size", None) or DEFAULT_BATCH_SIZE


class ImageClassifier(TransformersAdapter, Classifier, ClassifierOptions):
    """`AutoModelForImageClassification` + `AutoImageProcessor` from a local checkpoint."""

    family = "vit_classifier"
    zero_shot = False
    processor_class = "AutoImageProcessor"
    model_class = "AutoModelForImageClassification"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        _ = self.top_k, self.batch_size  # bad options fail here, before any load
        #: Class names in logit order, from `config.id2label`.
        self.class_names: list[str] = []
        self.multi_label = False

    def configure(self, model: Any, processor: Any) -> None:
        """Refuse a regression head; read the class names and how to score them."""
        config = model.config
        if config.problem_type == "regression":
            raise ModelLoadFailed(
                f"{self.spec.name} has a regression head, not a classifier",
                {"model": self.spec.name},
            )
        self.class_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.multi_label = (
            config.problem_type == "multi_label_classification" or config.num_labels == 1
        )

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.classify([blank_image()])

    def classify(
        self, images: Sequence[Image], labels: Sequence[str] | None = None
    ) -> list[dict[str, float]]:
        """Per image {class: probability}, best first.

        `labels`, when not empty, keeps only those classes (each must be one of the model's; the
        probabilities are still over all classes, not renormalised).
        """
        keep = self._selected_classes(labels)
        frames = rgb_images(images)
        results: list[dict[str, float]] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            inputs = self.processor(images=chunk, return_tensors="pt")
            with torch.inference_mode():
                logits = self.forward(dict(inputs))
            probabilities = self.postprocess(logits)
            for row in probabilities:
                results.append(
                    ranked([self.class_names[i] for i in keep], row[keep], top_k=self.top_k)
                )
        return results

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The only step that touches the device: pixels (B, 3, H, W) -> logits (B, classes)."""
        assert self.model is not None, "load() first"
        outputs = self.model(**to_device(inputs, self.device, self.dtype))
        logits: torch.Tensor = outputs.logits
        return logits

    def postprocess(self, logits: torch.Tensor) -> np.ndarray:
        """Logits (B, classes) -> float32 probabilities (B, classes), computed in fp32."""
        logits = logits.float().cpu()
        scores = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        return scores.numpy()

    def _selected_classes(self, labels: Sequence[str] | None) -> list[int]:
        """Indices of the classes to report: all, or those named in `labels`."""
        if self.model is None:
            raise RuntimeError("load() first")
        if not labels:
            return list(range(len(self.class_names)))
        index = {name: i for i, name in enumerate(self.class_names)}
        unknown = [label for label in labels if label not in index]
        if unknown:
            raise InvalidInput(
                f"{self.spec.name} has a fixed set of classes; unknown labels {unknown}",
                {"unknown": unknown, "known": self.class_names},
            )
        return [index[label] for label in dict.fromkeys(labels)]
