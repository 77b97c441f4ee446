"""Grounding DINO (IDEA-Research) through transformers: open-vocabulary boxes from text phrases.

The model reads all class phrases as one lower-case text, "a person. a cat.", and scores every
box against every text token. Post-processing is the processor's own, so results match the
reference implementation; this adapter only adds the mapping from matched tokens back to the
caller's prompts, and clips boxes to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import supervision as sv
import torch
from transformers.models.grounding_dino.modeling_grounding_dino import (
    GroundingDinoObjectDetectionOutput,
)

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.hf.adapter import TransformersAdapter, blank_image

#: Upstream's default text threshold (also what the IDEA-Research demos use).
DEFAULT_TEXT_THRESHOLD = 0.25
#: Characters the model treats as phrase delimiters; inside a phrase they would split it.
_DELIMITERS = str.maketrans({".": " ", "?": " "})


@dataclass
class _Batch:
    inputs: dict[str, torch.Tensor]
    sizes: list[tuple[int, int]]
    prompts: list[str]
    #: Token positions of each prompt's phrase in `input_ids` (same text for every image).
    spans: list[list[int]]


def _phrase(prompt: str) -> str:
    return " ".join(prompt.translate(_DELIMITERS).lower().split())


def _build_text(prompts: Sequence[str] | None) -> tuple[list[str], str]:
    """Validate prompts and join them the way the model was trained: "a person. a cat."."""
    if not prompts:
        raise InvalidInput("grounding_dino needs at least one text prompt")
    prompts = [str(p) for p in prompts]
    phrases = [_phrase(p) for p in prompts]
    if not all(phrases):
        raise InvalidInput("grounding_dino prompts must contain words", {"prompts": prompts})
    return prompts, ". ".join(phrases) + "."


class GroundingDinoDetector(TransformersAdapter, Detector):
    """`GroundingDinoForObjectDetection` + its processor, loaded from a local snapshot.

    `spec.options["text_threshold"]` (default 0.25, upstream's) only decides which tokens form a
    box's text label, which we use to name the box; which boxes are kept is decided by the
    request's `threshold` alone, so a low request threshold never changes the label rule.
    """

    family = "grounding_dino"
    model_class = "GroundingDinoForObjectDetection"

    @property
    def text_threshold(self) -> float:
        return float(self.spec.options.get("text_threshold", DEFAULT_TEXT_THRESHOLD))

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> _Batch:
        prompt_list, text = _build_text(prompts)
        if len(images) == 0:
            raise InvalidInput("no images to detect in")
        arrays = [np.asarray(image) for image in images]
        for array in arrays:
            if array.ndim != 3 or array.shape[2] != 3:
                raise InvalidInput(f"expected RGB images (H, W, 3), got shape {array.shape}")
        encoded = self.processor(images=arrays, text=[text] * len(arrays), return_tensors="pt")
        inputs = dict(encoded)
        return _Batch(
            inputs=inputs,
            sizes=[(int(a.shape[0]), int(a.shape[1])) for a in arrays],
            prompts=prompt_list,
            spans=self._phrase_spans(inputs["input_ids"][0].tolist()),
        )

    def _phrase_spans(self, input_ids: list[int]) -> list[list[int]]:
        """Positions of each phrase between [CLS], "." and [SEP], in prompt order."""
        tokenizer = self.processor.tokenizer
        delimiters = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
        delimiters.add(tokenizer.convert_tokens_to_ids("."))
        spans: list[list[int]] = [[]]
        for position, token in enumerate(input_ids):
            if token in delimiters:
                if spans[-1]:
                    spans.append([])
            else:
                spans[-1].append(position)
        return [span for span in spans if span]

    def forward(self, batch: _Batch) -> GroundingDinoObjectDetectionOutput:
        inputs = {k: v.to(self.device) for k, v in batch.inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        outputs = self.model(**inputs)
        # Post-processing runs on CPU in fp32: sigmoid/thresholds are not bf16-safe.
        return GroundingDinoObjectDetectionOutput(
            logits=outputs.logits.float().cpu(),
            pred_boxes=outputs.pred_boxes.float().cpu(),
            input_ids=cast(torch.LongTensor, batch.inputs["input_ids"]),
        )

    def postprocess(
        self, raw: GroundingDinoObjectDetectionOutput, batch: _Batch, threshold: float
    ) -> list[sv.Detections]:
        results = self.processor.post_process_grounded_object_detection(
            raw,
            threshold=threshold,
            text_threshold=self.text_threshold,
            target_sizes=batch.sizes,
        )
        # The processor keeps queries with max token probability > threshold, in query order;
        # recompute that mask to get each kept box's token probabilities for the label mapping.
        if raw.logits is None:
            raise RuntimeError("grounding_dino forward returned no logits")
        probs = torch.sigmoid(raw.logits)
        detections = []
        for result, image_probs, (height, width) in zip(results, probs, batch.sizes, strict=True):
            kept = image_probs[image_probs.max(dim=-1).values > threshold]
            boxes = result["boxes"].float().numpy().reshape(-1, 4).copy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
            labels = [
                batch.prompts[self._match_prompt(text, token_probs, batch)]
                for text, token_probs in zip(result["text_labels"], kept, strict=True)
            ]
            detections.append(
                make_detections(boxes, result["scores"].numpy(), labels, vocabulary=batch.prompts)
            )
        return detections

    def _match_prompt(self, label: str, token_probs: torch.Tensor, batch: _Batch) -> int:
        """Index of the prompt a box's text label came from.

        The label is the decoded run of tokens above the text threshold, so it may be a sub-span
        of one phrase ("cat" for "a cat"), span several ("person. a") or be empty. Rank prompts
        by: label equals the phrase, then phrase contains the label as whole words, then number
        of shared words, then the box's peak probability over the phrase's own tokens; the last
        key settles ties ("a" in "a person" and "a cat") and empty labels.
        """
        for token in self.processor.tokenizer.all_special_tokens:
            label = label.replace(token, " ")
        words = _phrase(label).split()
        joined = f" {' '.join(words)} "

        def rank(index: int) -> tuple[bool, bool, int, float]:
            phrase = _phrase(batch.prompts[index])
            phrase_words = phrase.split()
            span = batch.spans[index] if index < len(batch.spans) else []
            peak = float(token_probs[span].max()) if span else -1.0
            return (
                bool(words) and phrase == " ".join(words),
                bool(words) and joined in f" {phrase} ",
                sum(1 for w in set(words) if w in phrase_words),
                peak,
            )

        return max(range(len(batch.prompts)), key=rank)

    def warmup(self) -> None:
        with torch.inference_mode():
            self.forward(self.preprocess([blank_image(64, 64)], ["object"]))
