"""SAM 2 / SAM 2.1 video tracking (facebook/sam2.1-hiera-{tiny,small,base-plus,large}) through
transformers' `Sam2VideoModel` in streaming mode: frames arrive one at a time, in order.

Per request, `start` opens a `Sam2Session` around a transformers `Sam2VideoInferenceSession`
(`processor.init_video_session()` without a video); `step` feeds prompts due at that frame with
`processor.add_inputs_to_inference_session`, runs `model(inference_session=..., frame=...)`
and turns the low-resolution mask logits into masks at the input size with
`processor.post_process_masks`. The sizes are only different checkpoints (`model_id`).

SAM2 frame indices count the frames this session processed (0, 1, 2, ...), not video frame
numbers: the memory bank addresses "the previous frame" as index - 1, so a caller that samples
every 5th frame still tracks with a full memory. A prompt applies at the first processed frame
whose number is at or after its `frame_number`; frames before the first prompt are skipped.

Bounded memory: transformers keeps every frame's pixels and outputs in the session; after each
step this adapter drops what no later step can read (pixels of past frames, outputs older than
the memory window `max(num_maskmem, max_object_pointers_in_encoder)`, full-size masks) and
keeps one copy of the memory's positional encoding (the same for every frame); prompt frames
stay.

Streaming vs the whole-video API: with the whole video known, transformers normalises the
temporal encoding of object pointers by min(num_frames, max_object_pointers_in_encoder); a
stream does not know its length and always uses the latter, so for videos shorter than that
(16 frames in released checkpoints) the two modes differ slightly. Otherwise they are equal.

Options (`models.<name>.options`): `occlusion_threshold` (default 0.5): an object whose
presence probability sigmoid(object score logit) is below it, or whose mask is empty, is
reported `occluded`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv
import torch

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ConfigError
from zooserve.families.base import Image
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.kinds import Tracker, TrackPrompt
from zooserve.families.results import tracked_objects
from zooserve.families.sam2.inputs import checked_frame, checked_prompts, tensor_bytes
from zooserve.tracking.kalman import mask_box

#: Options every SAM2-family adapter accepts (subclasses add theirs).
BASE_OPTIONS = {"occlusion_threshold": 0.5}


@dataclass
class Sam2Session:
    """All per-video state of one tracking request (the adapter keeps none)."""

    width: int
    height: int
    #: transformers `Sam2VideoInferenceSession`: frames, feature cache, (sam2) memory bank.
    inference: Any
    #: Prompts not applied yet, in frame order.
    pending: list[TrackPrompt]
    #: Object ids prompted so far, in the order they were first prompted (output order).
    object_ids: list[int] = field(default_factory=list)
    next_index: int = 0  # SAM2 frame index of the next processed frame
    last_frame: int | None = None  # video frame number of the last `step`
    #: Family-specific per-object state (SAMURAI motion, SAM2Long pathways), by object id.
    tracks: dict[int, Any] = field(default_factory=dict)
    #: Spatial positional encoding shared by every memory entry (families with own memory).
    memory_position: torch.Tensor | None = None

    def take_due(self, frame_number: int) -> dict[int, TrackPrompt]:
        """Prompts whose frame has come, latest per object (older ones were skipped over)."""
        due: dict[int, TrackPrompt] = {}
        while self.pending and self.pending[0].frame_number <= frame_number:
            prompt = self.pending.pop(0)
            due[prompt.object_id] = prompt
        return due


class Sam2Tracker(TransformersAdapter, Tracker):
    """`Sam2VideoModel` + `Sam2VideoProcessor`, one streaming inference session per request."""

    family = "sam2"
    processor_class = "Sam2VideoProcessor"
    model_class = "Sam2VideoModel"
    options: dict[str, float] = BASE_OPTIONS
    #: Attributes parsed from the options that survive `unload` (a reload reuses them).
    persistent: tuple[str, ...] = ("settings",)

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.settings = self._read_options(spec)  # bad options fail here, before any load

    @classmethod
    def _read_options(cls, spec: ModelSpec) -> dict[str, float]:
        unknown = sorted(set(spec.options) - set(cls.options))
        if unknown:
            raise ConfigError(
                f"models.{spec.name}.options: unknown option(s) {unknown} for family "
                f"{cls.family!r}; known: {sorted(cls.options)}",
                {"model": spec.name, "unknown": unknown},
            )
        values: dict[str, float] = {}
        for name, default in cls.options.items():
            value = spec.options.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"models.{spec.name}.options.{name}: expected a number, got {value!r}",
                    {"model": spec.name, "option": name},
                )
            values[name] = float(value)
        return values

    def unload(self) -> None:
        """Drop the model and processor; keep the parsed options."""
        kept = {name: getattr(self, name) for name in self.persistent}
        super().unload()
        vars(self).update(kept)

    def warmup(self) -> None:
        """Two tiny frames (a prompt frame, then a tracked one) to measure a step's peak."""
        image = blank_image(64, 64)
        session = self.start([TrackPrompt(1, 0, box=(8.0, 8.0, 40.0, 40.0))], 64, 64)
        self.step(session, 0, image)
        self.step(session, 1, image)

    # --- the Tracker contract ----------------------------------------------------------------

    def start(self, prompts: Sequence[TrackPrompt], width: int, height: int) -> Sam2Session:
        """Validate the prompts and open a streaming session for a width x height video."""
        assert self.processor is not None, "load() first"
        prompts = checked_prompts(prompts, width, height)
        inference = self.processor.init_video_session(
            inference_device=self.device, dtype=self.dtype
        )
        inference.video_height, inference.video_width = height, width
        return Sam2Session(width, height, inference, pending=prompts)

    def step(self, session: Sam2Session, frame_number: int, image: Image) -> sv.Detections:
        """Track every prompted object into this frame; none before the first prompt."""
        image = checked_frame(session, frame_number, image)
        session.last_frame = frame_number
        due = session.take_due(frame_number)
        if not due and not session.object_ids:
            return tracked_objects([], [], [], [])
        for object_id in due:
            if object_id not in session.object_ids:
                session.object_ids.append(object_id)
        index = session.next_index
        session.next_index += 1
        pixels = self.processor(images=image, return_tensors="pt").pixel_values[0]
        with torch.inference_mode():
            masks, logits = self._track(session, index, pixels, due)
            return self._objects(session, masks, logits)

    def session_bytes(self, session: Sam2Session) -> int:
        """Tensor bytes the session holds: memory bank, cached frame and features, prompts."""
        return tensor_bytes([vars(session.inference), session.tracks, session.memory_position])

    # --- one frame ---------------------------------------------------------------------------

    def _track(
        self, session: Sam2Session, index: int, pixels: torch.Tensor, due: dict[int, TrackPrompt]
    ) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
        """Run SAM2 on frame `index`: low-res mask logits (1, 1, h, w) and object score logit
        per object id. Subclasses replace this with their own candidate/memory choices."""
        inference = session.inference
        for prompt in due.values():
            self._add_prompt(session, index, prompt)
        outputs = self.model(inference_session=inference, frame_idx=index, frame=pixels)
        self._forget_old_frames(session, index)
        ids = list(outputs.object_ids)
        low_res = outputs.pred_masks.reshape(len(ids), 1, *outputs.pred_masks.shape[-2:])
        scores = outputs.object_score_logits.reshape(len(ids)).float().cpu().tolist()
        return (
            {obj: low_res[i : i + 1] for i, obj in enumerate(ids)},
            dict(zip(ids, scores, strict=True)),
        )

    def _add_prompt(self, session: Sam2Session, index: int, prompt: TrackPrompt) -> None:
        """Register one prompt at frame `index` through the processor (coordinates in px)."""
        inference = session.inference
        size = (session.height, session.width)
        # The processor replaces (not extends) the objects with new inputs on every call.
        already = [o for o in inference.obj_with_new_inputs if o != prompt.object_id]
        if prompt.mask is not None:
            self.processor.add_inputs_to_inference_session(
                inference, frame_idx=index, obj_ids=prompt.object_id,
                input_masks=np.asarray(prompt.mask, dtype=bool), original_size=size,
            )  # fmt: skip
        else:
            kwargs: dict[str, Any] = {}
            if prompt.box is not None:
                kwargs["input_boxes"] = [[[float(v) for v in prompt.box]]]
            if prompt.points:
                kwargs["input_points"] = [[[[float(x), float(y)] for x, y in prompt.points]]]
                kwargs["input_labels"] = [[[int(v) for v in prompt.point_labels]]]
            self.processor.add_inputs_to_inference_session(
                inference, frame_idx=index, obj_ids=prompt.object_id, original_size=size, **kwargs
            )
        inference.obj_with_new_inputs = [*already, prompt.object_id]

    def _forget_old_frames(self, session: Sam2Session, index: int) -> None:
        """Drop what no later step reads: past pixels, non-prompt outputs out of the window,
        full-size masks (read only within their step), and duplicate positional encodings."""
        inference = session.inference
        window = max(self.model.num_maskmem, self.model.config.max_object_pointers_in_encoder)
        oldest_needed = index + 1 - window
        for frame in [f for f in inference.processed_frames if f < index]:
            del inference.processed_frames[frame]
        for outputs in inference.output_dict_per_obj.values():
            tracked = outputs["non_cond_frame_outputs"]
            for frame in [f for f in tracked if f < oldest_needed]:
                del tracked[frame]
            for stored in (outputs["cond_frame_outputs"], tracked):
                for out in stored.values():
                    out.pop("high_res_masks", None)
                    position = out.get("maskmem_pos_enc")
                    if position is None:
                        continue
                    if session.memory_position is None:
                        session.memory_position = position.clone()
                    # Every frame's is the same encoding of the same grid: keep one copy.
                    if position.shape == session.memory_position.shape:
                        out["maskmem_pos_enc"] = session.memory_position
        for frames in inference.frames_tracked_per_obj.values():
            for frame in [f for f in frames if f < oldest_needed]:
                del frames[frame]

    def _objects(
        self, session: Sam2Session, masks: dict[int, torch.Tensor], logits: dict[int, float]
    ) -> sv.Detections:
        """Masks at the input size (processor's post-processing), boxes from them, scores."""
        ids = [obj for obj in session.object_ids if obj in masks]
        low_res = torch.cat([masks[obj] for obj in ids]).float()
        full = self.processor.post_process_masks(
            [low_res], original_sizes=[[session.height, session.width]], binarize=True
        )[0]
        full_masks = full[:, 0].cpu().numpy()
        threshold = self.settings["occlusion_threshold"]
        scores = [float(1.0 / (1.0 + np.exp(-logits[obj]))) for obj in ids]
        boxes = [mask_box(mask) for mask in full_masks]
        return tracked_objects(
            ids,
            [(0.0, 0.0, 0.0, 0.0) if box is None else box for box in boxes],
            scores,
            [box is None or score < threshold for box, score in zip(boxes, scores, strict=True)],
            list(full_masks),
        )
