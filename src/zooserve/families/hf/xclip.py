"""X-CLIP (microsoft/xclip-*): zero-shot action recognition on a clip of frames via transformers.

X-CLIP encodes a fixed number of frames (`vision_config.num_frames`, 8 for the released
checkpoints: its cross-frame position embeddings have exactly that many slots), so a clip of any
length is sampled evenly down (or repeated up) to that count, both ends kept. Each candidate
action becomes a prompt through `options.template` (default "a person {}"), and the video's
logits over the prompts are softmaxed: scores compare the given actions only and sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ConfigError, InvalidInput
from zooserve.families.base import Image, run_stages
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import rgb_images
from zooserve.families.kinds import ActionRecognizer
from zooserve.runtimes.transformers_runtime import to_device

DEFAULT_TEMPLATE = "a person {}"
DEFAULT_NUM_FRAMES = 8


def sample_evenly(count: int, length: int) -> list[int]:
    """`count` indices into a clip of `length` frames, evenly spread with both ends kept.

    Shorter clips repeat frames (X-CLIP needs exactly `count`); floor(x + .5) rounds halves up,
    as `media.MediaSource.sample("uniform")` does.
    """
    if length < 1 or count < 1:
        return []
    if count == 1:
        return [0]
    return np.floor(np.linspace(0, length - 1, count) + 0.5).astype(int).tolist()


@dataclass
class XClipBatch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    inputs: dict[str, torch.Tensor]
    actions: list[str]
    #: indices of the request's frames that were encoded
    frame_indices: list[int]


class XClipActionRecognizer(TransformersAdapter, ActionRecognizer):
    """Transformers `XCLIPModel` + `XCLIPProcessor` (CLIP tokenizer, VideoMAE image processor)."""

    family = "xclip"
    model_class = "XCLIPModel"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.num_frames = DEFAULT_NUM_FRAMES
        self.template = str(spec.options.get("template", DEFAULT_TEMPLATE))

    def load(self) -> None:
        """Refuse a template without `{}` before reading any weights, then load."""
        if "{}" not in self.template:
            raise ConfigError(
                f"models.{self.spec.name}.options.template must contain '{{}}' where the action "
                f"goes, got {self.template!r}"
            )
        super().load()

    def configure(self, model: Any, processor: Any) -> None:
        num_frames = getattr(model.config.vision_config, "num_frames", None)
        self.num_frames = int(num_frames or DEFAULT_NUM_FRAMES)

    def warmup(self) -> None:
        """One small forward so the manager can measure a forward pass's peak memory."""
        self.recognize([blank_image()], ["standing"])

    def recognize(self, frames: Sequence[Image], actions: Sequence[str]) -> dict[str, float]:
        """{action: probability} for one clip of RGB frames, sorted high to low, summing to 1."""
        scores: dict[str, float] = run_stages(self, (frames, actions))
        return scores

    def preprocess(self, frames: Sequence[Image], actions: Sequence[str]) -> XClipBatch:
        """Validate, sample `num_frames` frames, tokenise the prompts (CPU only)."""
        if not actions:
            raise InvalidInput("give at least one candidate action")
        if not all(isinstance(a, str) and a.strip() for a in actions):
            raise InvalidInput(
                "actions must be non-empty strings", {"actions": [str(a) for a in actions]}
            )
        unique_actions = list(dict.fromkeys(actions))  # a repeated action would split its mass
        clip = rgb_images(frames, noun="frame")
        if not clip:
            raise InvalidInput("give at least one frame")
        indices = sample_evenly(self.num_frames, len(clip))
        prompts = [self.template.format(action) for action in unique_actions]
        # One video (a list of frames) in a batch of one; truncation: the text model has a fixed
        # number of positions (77 for released weights), longer prompts would crash the forward.
        inputs = self.processor(
            text=prompts,
            videos=[[clip[i] for i in indices]],
            return_tensors="pt",
            padding=True,
            truncation=True,
        )
        return XClipBatch(inputs=dict(inputs), actions=unique_actions, frame_indices=indices)

    def forward(self, batch: XClipBatch) -> torch.Tensor:
        """Run the model; keep only the video-to-text logits, shape (1, n_actions)."""
        assert self.model is not None, "load() first"
        return self.model(**to_device(batch.inputs, self.device, self.dtype)).logits_per_video

    def postprocess(self, logits: torch.Tensor, batch: XClipBatch) -> dict[str, float]:
        """Softmax over the actions in fp32, sorted by probability, high to low."""
        probabilities = logits.float().softmax(dim=-1)[0].cpu().tolist()
        ranked = sorted(zip(batch.actions, probabilities, strict=True), key=lambda p: -p[1])
        return {action: float(p) for action, p in ranked}
