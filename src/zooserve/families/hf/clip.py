"""CLIP-style dual encoders (CLIPModel, SiglipModel, Siglip2Model) through transformers.

One loaded model serves two kinds: zero-shot classification of crops against candidate texts
(clothing attributes with fashion-clip) and L2-normalised image/text embeddings (re-id with
clip-vit-l). Both towers project into one space, so image and text vectors are comparable.

How scores differ by family (as in transformers' zero-shot-image-classification pipeline):
- CLIP was trained with a softmax over the batch's texts: scores are a softmax over the
  candidate labels, they sum to 1 and only rank the labels against each other.
- SigLIP / SigLIP 2 were trained with an independent sigmoid per image-text pair: each score
  is that label's own probability (scale * cosine + bias), several labels can be high at once
  ("gloves" and "face mask"), and the scores need not sum to 1. Their text tower was trained on
  texts padded to 64 tokens and pools the last position, so texts are always padded to the
  model's `max_position_embeddings` (64 in released checkpoints).

Options (`models.<name>.options`): `template` (prompt wrapped around each label, default
"a photo of {}"), `top_k` (keep the k best labels per image), `batch_size` (default 32).
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
from zooserve.families.hf.image_classifier import ClassifierOptions, ranked
from zooserve.families.images import rgb_images
from zooserve.families.kinds import Classifier, Embedder
from zooserve.runtimes.transformers_runtime import to_device

DEFAULT_TEMPLATE = "a photo of {}"


def _prompt_template(spec: ModelSpec) -> str:
    """The `template` option; it must hold exactly one `{}` where the label goes."""
    template = spec.options.get("template", DEFAULT_TEMPLATE)
    valid = isinstance(template, str) and template.count("{}") == 1
    if valid:
        try:
            template.format("label")
        except (IndexError, KeyError, ValueError):
            valid = False
    if not valid:
        raise ConfigError(
            f"models.{spec.name}.options.template: expected text with one {{}} for the label, "
            f"e.g. {DEFAULT_TEMPLATE!r}, got {template!r}",
            {"model": spec.name, "option": "template"},
        )
    return str(template)


def _pooled(output: Any) -> torch.Tensor:
    """`get_*_features` return a tensor in transformers 4 and, in 5, a model output whose
    `pooler_output` holds the projected embedding (B, D)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled: torch.Tensor = output.pooler_output
    return pooled


class ClipModel(TransformersAdapter, Classifier, Embedder, ClassifierOptions):
    """`AutoModel` (CLIP / SigLIP / SigLIP 2) + `AutoProcessor` from a local checkpoint.

    Its `kind` is "classifier" (first kind); it is an `Embedder` too, for re-id vectors.
    """

    family = "clip"
    zero_shot = True
    model_class = "AutoModel"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        _ = self.template, self.top_k, self.batch_size  # bad options fail here, before any load
        #: SigLIP family: sigmoid scores, logit bias, texts padded to the full length.
        self.sigmoid = False
        self.text_length = 77

    # Read from `spec` (which survives `unload`), so a reload sees it again.
    @property
    def template(self) -> str:
        return _prompt_template(self.spec)

    def configure(self, model: Any, processor: Any) -> None:
        """Refuse a model without both towers; note SigLIP's scoring and text length."""
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(model, method):
                raise ModelLoadFailed(
                    f"{self.spec.name} is a {type(model).__name__}, not an image-text dual "
                    "encoder (family clip expects CLIP, SigLIP or SigLIP 2)",
                    {"model": self.spec.name},
                )
        self.sigmoid = "siglip" in model.config.model_type
        self.text_length = int(model.config.text_config.max_position_embeddings)

    def warmup(self) -> None:
        """One tiny forward of each tower so the manager can measure the peak memory."""
        self.classify([blank_image()], ["object"])

    # --- classifier ------------------------------------------------------------------------

    def classify(
        self, images: Sequence[Image], labels: Sequence[str] | None = None
    ) -> list[dict[str, float]]:
        """Per image {label: score}, best first: softmax over labels (CLIP) or a sigmoid per
        label (SigLIP). Each label is wrapped in the `template` option before encoding."""
        if not labels or not all(isinstance(label, str) and label.strip() for label in labels):
            raise InvalidInput(
                f"{self.spec.name} classifies zero-shot: give candidate labels (non-empty texts)",
                {"labels": [str(label) for label in labels or []]},
            )
        candidates = list(dict.fromkeys(labels))
        frames = rgb_images(images)
        if not frames:
            return []
        text_embeds = torch.from_numpy(
            self.embed_texts([self.template.format(label) for label in candidates])
        )
        image_embeds = torch.from_numpy(self.embed_images(frames))
        scores = self._scores(image_embeds, text_embeds)
        return [ranked(candidates, row, top_k=self.top_k) for row in scores]

    def _scores(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> np.ndarray:
        """Unit vectors (I, D) x (T, D) -> scores (I, T), the way the model's forward scores."""
        logit_scale = self.model.logit_scale.detach().float().cpu().exp()
        logits = image_embeds @ text_embeds.T * logit_scale
        if self.sigmoid:
            logits = logits + self.model.logit_bias.detach().float().cpu()
            return logits.sigmoid().numpy()
        return logits.softmax(dim=-1).numpy()

    # --- embedder --------------------------------------------------------------------------

    def embed_images(self, images: Sequence[Image]) -> np.ndarray:
        """RGB images -> float32 (N, D) unit vectors from the projected image tower."""
        frames = rgb_images(images)
        chunks = [np.zeros((0, self._dimension()), dtype=np.float32)]
        for start in range(0, len(frames), self.batch_size):
            inputs = self.processor.image_processor(
                images=frames[start : start + self.batch_size], return_tensors="pt"
            )
            with torch.inference_mode():
                features = self.forward_images(dict(inputs))
            chunks.append(_normalised(features))
        return np.concatenate(chunks)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 (N, D) unit vectors from the projected text tower (as given, no
        template). Texts longer than the text tower's positions are truncated."""
        if not all(isinstance(text, str) for text in texts):
            raise InvalidInput("texts must be strings")
        chunks = [np.zeros((0, self._dimension()), dtype=np.float32)]
        for start in range(0, len(texts), self.batch_size):
            inputs = self.processor.tokenizer(
                list(texts[start : start + self.batch_size]), return_tensors="pt", **self._padding()
            )
            with torch.inference_mode():
                features = self.forward_texts(dict(inputs))
            chunks.append(_normalised(features))
        return np.concatenate(chunks)

    def forward_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Touches the device: processor image outputs -> projected features (B, D)."""
        assert self.model is not None, "load() first"
        return _pooled(self.model.get_image_features(**to_device(inputs, self.device, self.dtype)))

    def forward_texts(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Touches the device: token ids (B, L) -> projected features (B, D)."""
        assert self.model is not None, "load() first"
        return _pooled(self.model.get_text_features(**to_device(inputs, self.device, self.dtype)))

    def _padding(self) -> dict[str, Any]:
        if self.sigmoid:  # SigLIP was trained on max-length padding (module docstring)
            return {"padding": "max_length", "max_length": self.text_length, "truncation": True}
        return {"padding": True, "max_length": self.text_length, "truncation": True}

    def _dimension(self) -> int:
        if self.model is None:
            raise RuntimeError("load() first")
        config = self.model.config
        # CLIP projects both towers to `projection_dim`; SigLIP's text head to `projection_size`.
        dimension = (
            getattr(config, "projection_dim", None)
            or getattr(config.text_config, "projection_size", None)
            or config.text_config.hidden_size
        )
        return int(dimension)


def _normalised(features: torch.Tensor) -> np.ndarray:
    """(B, D) features -> float32 unit rows, normalised in fp32 (half precision on CUDA)."""
    features = features.float().cpu()
    return (features / features.norm(p=2, dim=-1, keepdim=True)).numpy()
