"""What every tiny-model builder does: seed the weights, name the classes, save a checkpoint
directory that `from_pretrained` reads back offline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

ModelT = TypeVar("ModelT", bound=torch.nn.Module)


def seeded(model_class: type[ModelT], config: Any) -> ModelT:
    """A model with random weights drawn from seed 0: the same tiny model every session."""
    torch.manual_seed(0)
    return model_class(config).eval()


def label_maps(names: Sequence[str]) -> dict[str, Any]:
    """`id2label` / `label2id` for a config, in the order of `names`."""
    return {
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def save_checkpoint(directory: Path, model: Any, processor: Any) -> Path:
    """Write `model` and its processor into `directory`, as a released checkpoint holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
