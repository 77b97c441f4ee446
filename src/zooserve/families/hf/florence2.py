"""Florence-2 (microsoft/Florence-2-*, transformers-native): detection by text generation.

Florence-2 writes its detections as text, `label<loc_x1><loc_y1><loc_x2><loc_y2>...`, with
coordinates quantised to 1000 bins per axis; the processor's `post_process_generation` parses
that text back to pixel boxes for the original image size.

Task choice:
- with prompts: `<OPEN_VOCABULARY_DETECTION>` once per prompt ("Locate {prompt} in the image.").
  Every box of that generation belongs to the prompt asked for, so it is labelled with the prompt
  itself (class ids stay stable). `<CAPTION_TO_PHRASE_GROUNDING>` would need one call only, but
  it grounds each phrase of a caption, assumes every phrase is in the image, and its labels are
  whatever substrings the model echoes, so boxes cannot be tied back to prompts reliably.
- without prompts: `<OD>` (closed vocabulary); labels are the model's own text.
- `describe(images, task)`: the text tasks (`<CAPTION>`, `<DETAILED_CAPTION>`,
  `<MORE_DETAILED_CAPTION>`, `<OCR>`) for vision-language queries.

Scores: Florence-2 has no detection score. Each box is scored with the mean probability of its
four location tokens under greedy decoding (the same value as `compute_transition_scores(...,
normalize_logits=True)`), which is deterministic and drops when the model hesitates about where
the box is. The probabilities are recorded per step by a logits processor, so no (steps x vocab)
score tensors are kept on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch
from PIL import Image as PILImage

from zooserve.catalog import ModelSpec
from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import rgb_images

OPEN_VOCABULARY_TASK = "<OPEN_VOCABULARY_DETECTION>"
CLOSED_VOCABULARY_TASK = "<OD>"
#: Florence-2's text tasks: what `describe` answers (captions of three lengths, and OCR).
TEXT_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>")
DEFAULT_MAX_NEW_TOKENS = 256
_BOX_TOKENS = 4


@dataclass
class Florence2Task:
    """One `generate` call: one task text for every image of the batch."""

    task: str
    #: The prompt that every box of this call is labelled with; None for `<OD>`.
    prompt: str | None
    inputs: dict[str, torch.Tensor]


@dataclass
class Florence2Batch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    tasks: list[Florence2Task]
    #: Original (width, height) of each image: the `image_size` the parser expects.
    sizes: list[tuple[int, int]]
    prompts: list[str] | None


@dataclass
class Florence2Generation:
    """Greedy output of one task, on CPU.

    `sequences` (B, 1 + T) are token ids (decoder start first); `probabilities` (B, T) the
    probability of each generated token.
    """

    sequences: torch.Tensor
    probabilities: torch.Tensor


class _TokenProbabilities:
    """Logits processor that records the probability of the token greedy decoding picks.

    Appended after generate's own processors, it sees the final scores, whose argmax is the
    chosen token, so the max of their softmax is that token's probability.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(scores.float().softmax(-1).amax(-1))
        return scores


class Florence2Detector(TransformersAdapter, Detector):
    """Transformers `Florence2ForConditionalGeneration` driven through its detection tasks."""

    family = "florence2"
    open_vocabulary = True
    model_class = "Florence2ForConditionalGeneration"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        #: token id of `<loc_k>` -> k, to find box tokens in generated sequences.
        self.location_bins: dict[int, int] | None = None

    def configure(self, model: Any, processor: Any) -> None:
        """Refuse a tokenizer without the 1000 location tokens; map their ids to bins."""
        tokenizer = processor.tokenizer
        ids = tokenizer.convert_tokens_to_ids([f"<loc_{k}>" for k in range(1000)])
        bins = {
            int(i): k for k, i in enumerate(ids) if i is not None and i != tokenizer.unk_token_id
        }
        if len(bins) != 1000:
            raise ValueError(f"tokenizer at {self.source} lacks Florence-2's <loc_0..999> tokens")
        self.location_bins = bins

    def warmup(self) -> None:
        """One short generation on a blank image, to measure a forward pass's peak memory."""
        batch = self.preprocess([blank_image(64, 64)], None)
        with torch.inference_mode():
            self.forward(batch, max_new_tokens=8)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> Florence2Batch:
        """Build one processor batch per task text (CPU only)."""
        if prompts is not None and not all(isinstance(p, str) for p in prompts):
            raise InvalidInput("prompts must be strings", {"prompts": [str(p) for p in prompts]})
        # Duplicates and blanks would only cost extra generate calls.
        queries = list(dict.fromkeys(p.strip() for p in prompts or [] if p.strip())) or None
        frames = rgb_images(images)
        sizes = [(int(f.shape[1]), int(f.shape[0])) for f in frames]
        if not frames:
            return Florence2Batch(tasks=[], sizes=[], prompts=queries)
        # PIL images: unambiguous channel order for the image processor.
        pictures = [PILImage.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
        texts: list[tuple[str, str | None, str]] = (
            [(OPEN_VOCABULARY_TASK, q, OPEN_VOCABULARY_TASK + q) for q in queries]
            if queries
            else [(CLOSED_VOCABULARY_TASK, None, CLOSED_VOCABULARY_TASK)]
        )
        tasks = [
            Florence2Task(
                task=task,
                prompt=prompt,
                inputs=dict(
                    self.processor(text=[text] * len(frames), images=pictures, return_tensors="pt")
                ),
            )
            for task, prompt, text in texts
        ]
        return Florence2Batch(tasks=tasks, sizes=sizes, prompts=queries)

    def forward(
        self, batch: Florence2Batch, max_new_tokens: int | None = None
    ) -> list[Florence2Generation]:
        """Greedy generation per task; returns token ids and their probabilities on CPU."""
        if not batch.tasks:
            return []
        assert self.model is not None, "load() first"
        from transformers import LogitsProcessorList

        limit = max_new_tokens or int(
            self.spec.options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        )
        generations = []
        for task in batch.tasks:
            inputs = {
                name: tensor.to(self.device, dtype=self.dtype)
                if name == "pixel_values"
                else tensor.to(self.device)
                for name, tensor in task.inputs.items()
            }
            recorder = _TokenProbabilities()
            sequences = self.model.generate(
                **inputs,
                max_new_tokens=limit,
                num_beams=1,
                do_sample=False,
                logits_processor=LogitsProcessorList([recorder]),
            )
            probabilities = (
                torch.stack(recorder.steps, dim=1)
                if recorder.steps
                else torch.zeros(sequences.shape[0], 0)
            )
            generations.append(
                Florence2Generation(sequences=sequences.cpu(), probabilities=probabilities.cpu())
            )
        return generations

    def describe(self, images: Sequence[Image], task: str = "<CAPTION>") -> list[str]:
        """Florence-2 as a vision-language model: a caption (or the text read, for `<OCR>`)
        per image, parsed by the processor's own `post_process_generation`."""
        if task not in TEXT_TASKS:
            raise InvalidInput(f"unknown Florence-2 text task {task!r}; known: {list(TEXT_TASKS)}")
        frames = rgb_images(images)
        if not frames:
            return []
        pictures = [PILImage.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
        inputs = dict(
            self.processor(text=[task] * len(frames), images=pictures, return_tensors="pt")
        )
        batch = Florence2Batch(
            tasks=[Florence2Task(task=task, prompt=None, inputs=inputs)],
            sizes=[(int(f.shape[1]), int(f.shape[0])) for f in frames],
            prompts=None,
        )
        with torch.inference_mode():
            (generation,) = self.forward(batch)
        answers = self.processor.batch_decode(generation.sequences, skip_special_tokens=False)
        return [
            str(self.processor.post_process_generation(text, task=task, image_size=size)[task])
            for text, size in zip(answers, batch.sizes, strict=True)
        ]

    def postprocess(
        self, raw: list[Florence2Generation], batch: Florence2Batch, threshold: float
    ) -> list[sv.Detections]:
        """Parse with the processor, score each box, keep scores above `threshold`, clip."""
        per_image: list[tuple[list[list[float]], list[float], list[str]]] = [
            ([], [], []) for _ in batch.sizes
        ]
        for task, generation in zip(batch.tasks, raw, strict=True):
            texts = self.processor.batch_decode(generation.sequences, skip_special_tokens=False)
            for i, text in enumerate(texts):
                size = batch.sizes[i]
                parsed = self.processor.post_process_generation(
                    text, task=task.task, image_size=size
                )[task.task]
                boxes, labels = _boxes_and_labels(parsed)
                if task.prompt is not None:
                    labels = [task.prompt] * len(boxes)
                scores = self._box_scores(
                    boxes, generation.sequences[i, 1:], generation.probabilities[i], size
                )
                for box, score, label in zip(boxes, scores, labels, strict=True):
                    if score > threshold:
                        per_image[i][0].append(box)
                        per_image[i][1].append(score)
                        per_image[i][2].append(label)
        vocabulary = batch.prompts or list(
            dict.fromkeys(label for _, _, labels in per_image for label in labels)
        )
        detections = []
        for (boxes, scores, labels), (width, height) in zip(per_image, batch.sizes, strict=True):
            xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
            xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
            detections.append(make_detections(xyxy, np.asarray(scores), labels, vocabulary))
        return detections

    def _box_scores(
        self,
        boxes: list[list[float]],
        tokens: torch.Tensor,
        probabilities: torch.Tensor,
        size: tuple[int, int],
    ) -> list[float]:
        """Mean probability of each parsed box's four `<loc_*>` tokens.

        The parser reads each run of location tokens four at a time, in text order; the same
        walk over the token ids, dequantised with the parser's own function, lines each parsed
        box up with its tokens. A box with no such run (a polygon's bounding box) gets the mean
        probability of every location token of the sequence.
        """
        assert self.location_bins is not None
        groups: list[tuple[list[int], float]] = []
        run: list[tuple[int, float]] = []
        located: list[float] = []
        for token, probability in zip(tokens.tolist(), probabilities.tolist(), strict=False):
            bin_index = self.location_bins.get(token)
            if bin_index is None:
                run = []
                continue
            located.append(probability)
            run.append((bin_index, probability))
            if len(run) == _BOX_TOKENS:
                groups.append(([b for b, _ in run], float(np.mean([p for _, p in run]))))
                run = []
        fallback = float(np.mean(located)) if located else 0.0
        if groups:
            dequantize = self.processor.post_processor.dequantize
            bins = torch.tensor([g[0] for g in groups])
            pixel_boxes = dequantize(bins, size=size).tolist()
        else:
            pixel_boxes = []
        scores, cursor = [], 0
        for box in boxes:
            match = next(
                (j for j in range(cursor, len(groups)) if pixel_boxes[j] == list(box)), None
            )
            if match is None:
                scores.append(fallback)
            else:
                scores.append(groups[match][1])
                cursor = match + 1
        return scores


def _boxes_and_labels(parsed: dict[str, Any]) -> tuple[list[list[float]], list[str]]:
    """Boxes and labels from either parse shape; a polygon becomes its bounding box."""
    if "bboxes_labels" not in parsed:  # <OD>: {"bboxes", "labels"}
        return [list(b) for b in parsed["bboxes"]], list(parsed["labels"])
    boxes = [list(b) for b in parsed["bboxes"]]
    labels = list(parsed["bboxes_labels"])
    for polygons, label in zip(parsed["polygons"], parsed["polygons_labels"], strict=True):
        points = np.asarray([xy for p in polygons for xy in p], dtype=np.float64).reshape(-1, 2)
        if len(points):
            boxes.append([*points.min(axis=0).tolist(), *points.max(axis=0).tolist()])
            labels.append(label)
    return boxes, labels
