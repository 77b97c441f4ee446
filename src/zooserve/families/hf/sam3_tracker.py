"""SAM 3 concept tracking (Meta, `Sam3VideoModel` + `Sam3VideoProcessor`): a text ("person",
"red car") finds every instance on every frame and tracks each under a stable id, with a mask.

The checkpoint is its own (`sam3_video` config: the SAM 3 detector plus a
`Sam3TrackerVideoModel`), not the image model's. Frames stream in one at a time: `start_concepts`
opens transformers' streaming session (`init_video_session()` without a video) with the texts;
`step` runs `model(inference_session=..., frame=...)` and reads that frame's objects through the
processor's own `postprocess_outputs` (masks at the input size, boxes from them, the detection
score, each object's concept). Ids are transformers' plus one, so they start at 1 like the ids of
other text-prompted tracks; an object appears in the frames where its mask is not empty.

The concepts are texts only: box, point or mask prompts (`start`) are the caller's mistake —
the SAM2-family trackers (`sam2`, `edgetam`) take those.

Bounded memory: transformers keeps every frame's pixels and outputs; after each step this
adapter drops past pixels (keeping the frame count, which transformers reads), tracked outputs
older than the memory window `max(num_maskmem, max_object_pointers_in_encoder)` and per-frame
scores of past frames. Conditioning outputs (the frame each object was found on, and
re-conditioned frames) stay: every one of them feeds the object pointers.

Streaming vs the whole video: in whole-video propagation transformers holds outputs back for
`hotstart_delay` frames (15 in released weights) and removes objects the hot start finds
unmatched or duplicated; a stream cannot look ahead and reports them as they come.
Licence: "SAM License" (Meta), like `sam3`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Image
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.kinds import ConceptTracker, TrackPrompt
from zooserve.families.results import tracked_objects
from zooserve.families.sam2.inputs import checked_frame, tensor_bytes

#: What a past frame's pixels become: transformers counts frames by their keys.
_DROPPED = torch.empty(0)


@dataclass
class Sam3TrackSession:
    """All per-video state of one concept-tracking request (the adapter keeps none)."""

    width: int
    height: int
    #: transformers `Sam3VideoInferenceSession`: prompts, frames, memory bank, track metadata.
    inference: Any
    texts: list[str]
    last_frame: int | None = None  # video frame number of the last `step`


class Sam3ConceptTracker(TransformersAdapter, ConceptTracker):
    """`Sam3VideoModel` + `Sam3VideoProcessor`, one streaming session per request."""

    family = "sam3_tracker"
    processor_class = "Sam3VideoProcessor"
    model_class = "Sam3VideoModel"

    def warmup(self) -> None:
        """Two tiny frames (detection, then detection and tracking) to measure a step's peak."""
        session = self.start_concepts(["object"], 64, 64)
        self.step(session, 0, blank_image(64, 64))
        self.step(session, 1, blank_image(64, 64))

    # --- the Tracker contract ----------------------------------------------------------------

    def start(self, prompts: Sequence[TrackPrompt], width: int, height: int) -> Sam3TrackSession:
        """Refused: SAM 3 tracks concepts, given as text prompts."""
        kinds = sorted({_prompt_kind(p) for p in prompts}) or ["no"]
        raise InvalidInput(
            f'{self.spec.name} tracks concepts: send text prompts (e.g. ["person"]), not '
            f"{' or '.join(kinds)} prompts; box, point and mask prompts are for SAM2-family "
            "trackers (sam2, edgetam)",
            {"model": self.spec.name, "family": self.family, "prompt_kinds": kinds},
        )

    def start_concepts(self, texts: Sequence[str], width: int, height: int) -> Sam3TrackSession:
        """Open a streaming session for a width x height video that tracks every instance of
        each text."""
        assert self.processor is not None, "load() first"
        concepts = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        if not concepts:
            raise InvalidInput("give at least one text prompt naming what to track")
        if width <= 0 or height <= 0:
            raise InvalidInput(f"video size must be positive, got {width}x{height}")
        inference = self.processor.init_video_session(
            inference_device=self.device, dtype=self.dtype
        )
        inference.video_height, inference.video_width = height, width
        self.processor.add_text_prompt(inference, concepts)
        return Sam3TrackSession(width, height, inference, concepts)

    def step(self, session: Sam3TrackSession, frame_number: int, image: Image) -> sv.Detections:
        """Detect and track every concept in this frame (frames in increasing order)."""
        image = checked_frame(session, frame_number, image)
        session.last_frame = frame_number
        pixels = self.processor(images=image, return_tensors="pt").pixel_values[0]
        with torch.inference_mode():
            outputs = self.model(inference_session=session.inference, frame=pixels)
            found = self.processor.postprocess_outputs(session.inference, outputs)
        self._forget_old_frames(session.inference, outputs.frame_idx)
        return _objects(found)

    def session_bytes(self, session: Sam3TrackSession) -> int:
        """Tensor bytes the session holds: memory bank, cached features, text embeddings."""
        return tensor_bytes(vars(session.inference))

    def _forget_old_frames(self, inference: Any, index: int) -> None:
        """Drop what no later step reads: past pixels, tracked outputs out of the memory window,
        per-frame scores and suppressions of past frames."""
        tracker = self.model.config.tracker_config
        window = max(tracker.num_maskmem, tracker.max_object_pointers_in_encoder)
        oldest_needed = index + 1 - window
        for frame in inference.processed_frames:
            if frame < index:
                inference.processed_frames[frame] = _DROPPED
        for outputs in inference.output_dict_per_obj.values():
            tracked = outputs["non_cond_frame_outputs"]
            for frame in [f for f in tracked if f < oldest_needed]:
                del tracked[frame]
        for frames in inference.frames_tracked_per_obj.values():
            for frame in [f for f in frames if f < oldest_needed]:
                del frames[frame]
        for per_frame in (
            inference.obj_id_to_tracker_score_frame_wise,
            inference.suppressed_obj_ids,
        ):
            for frame in [f for f in per_frame if f < index]:
                del per_frame[frame]


def _objects(found: dict[str, Any]) -> sv.Detections:
    """The processor's per-frame result as tracked objects, each labelled with its concept."""
    ids = [int(i) for i in found["object_ids"]]
    concept_of = {obj: text for text, objs in found["prompt_to_obj_ids"].items() for obj in objs}
    masks = found["masks"].cpu().numpy().astype(bool)
    detections = tracked_objects(
        [obj + 1 for obj in ids],
        found["boxes"].float().cpu().numpy(),
        found["scores"].float().cpu().numpy(),
        [False] * len(ids),
        list(masks),
    )
    detections.data["class_name"] = np.array([concept_of[obj] for obj in ids], dtype=str)
    return detections


def _prompt_kind(prompt: TrackPrompt) -> str:
    if prompt.mask is not None or prompt.mask_rle is not None:
        return "mask"
    return "box" if prompt.box is not None else "point"
