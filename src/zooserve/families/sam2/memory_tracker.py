"""SAM2 video steps with the mask candidate and the memory frames chosen by the caller.

On every tracked frame transformers' `Sam2VideoModel.forward` makes two choices itself: which
of the decoder's candidate masks to keep (highest predicted IoU) and which earlier frames to
attend to (the last `num_maskmem - 1` frames, and object pointers of the last
`max_object_pointers_in_encoder - 1`). SAMURAI and SAM2Long change exactly these two choices and
the public API has no hook for either, so `MemoryTracker` runs the same step from the model's
parts with both choices made by a subclass:

1. `propose`: memory attention over an explicit `MemoryView`, then the mask decoder with
   multimask output -> all K candidates (masks, predicted IoUs, output tokens, object score);
2. `pointer`: the object pointer of the kept candidate (with SAM2's no-object handling);
3. `encode`: the memory encoder on the kept masks, batched over objects and pathways.
Prompt frames go through transformers' own single-frame inference (`_prompted`).

Coupling: this calls private helpers of transformers 5.x `Sam2VideoModel`
(`_prepare_vision_features`, `_run_single_frame_inference`, `_select_closest_cond_frames`,
`_build_memory_attention_inputs`, `_process_object_pointers`, `_encode_new_memory`) and mirrors
`_single_frame_forward`. tests/families/sam2/test_samurai.py runs this path with SAM2's own choices
and requires exactly the masks of `Sam2VideoModel.forward`, so a transformers change that breaks
the mirror fails there. Known difference: transformers binarizes the memory masks of every
object on a frame where any object is prompted; here only the prompted objects' (as SAM2 does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from zooserve.families.kinds import TrackPrompt
from zooserve.families.sam2.tracker import Sam2Session, Sam2Tracker

#: transformers' mask logit for "no object" (NO_OBJ_SCORE in modeling_sam2_video).
NO_OBJECT_LOGIT = -1024.0


@dataclass
class MemoryEntry:
    """One object's kept result on one frame, as later frames attend to it."""

    features: torch.Tensor  # (HW, 1, 64) bfloat16, from the memory encoder
    pointer: torch.Tensor  # (1, 1, hidden) object pointer
    object_logit: float
    affinity: float  # predicted IoU of the kept mask (1.0 on prompt frames)
    eligible: bool = True  # may later be selected as memory (SAMURAI / SAM2Long rules)


@dataclass
class MemoryView:
    """What one object's step attends to besides the current frame."""

    conditioning: dict[int, MemoryEntry]  # prompt frames (temporal slot 0), frame -> entry
    memories: list[tuple[int, MemoryEntry]]  # (temporal slot 1..num_maskmem-1, entry), oldest first
    pointers: list[tuple[int, MemoryEntry]]  # (temporal offset >= 1, entry)


@dataclass
class Proposal:
    """The decoder's K candidates for one object on one frame (device tensors)."""

    low_res: torch.Tensor  # (K, 1, h, w) mask logits at 1/4 of the model's image size
    high_res: torch.Tensor  # (K, 1, S, S) mask logits at the model's image size S
    tokens: torch.Tensor  # (K, hidden) decoder output tokens (-> object pointers)
    affinities: np.ndarray  # (K,) predicted IoU
    object_logit: float
    boxes: np.ndarray  # (K, 4) xyxy in model pixels, NaN rows for empty masks


@dataclass
class Kept:
    """A candidate a subclass keeps: its masks, score and how to remember it."""

    low_res: torch.Tensor  # (1, 1, h, w)
    high_res: torch.Tensor  # (1, 1, S, S)
    pointer: torch.Tensor  # (1, 1, hidden)
    object_logit: float
    affinity: float


class MemoryTracker(Sam2Tracker):
    """A SAM2 tracker whose subclass picks candidates and memory frames per object.

    Subclasses implement `_begin` (an object was prompted at a frame) and `_advance` (track the
    already prompted objects into a frame) on `session.tracks`.
    """

    def _begin(self, session: Sam2Session, obj: int, index: int, entry: MemoryEntry) -> None:
        raise NotImplementedError

    def _advance(self, session: Sam2Session, index: int, objects: list[int]) -> dict[int, Kept]:
        raise NotImplementedError

    def _forget(self, session: Sam2Session, index: int) -> None:
        """Drop per-object memory no later step can select (subclasses know their rules)."""

    def _track(
        self, session: Sam2Session, index: int, pixels: torch.Tensor, due: dict[int, TrackPrompt]
    ) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
        inference = session.inference
        inference.add_new_frame(pixels, index)
        kept: dict[int, Kept] = {}
        if due:
            kept.update(self._prompted(session, index, due))
        tracked = [obj for obj in session.object_ids if obj not in due]
        if tracked:
            kept.update(self._advance(session, index, tracked))
        for frame in [f for f in inference.processed_frames if f < index]:
            del inference.processed_frames[frame]
        self._forget(session, index)
        return (
            {obj: k.low_res for obj, k in kept.items()},
            {obj: k.object_logit for obj, k in kept.items()},
        )

    def _prompted(
        self, session: Sam2Session, index: int, due: dict[int, TrackPrompt]
    ) -> dict[int, Kept]:
        """SAM on the prompts (transformers' single-frame inference), then their memories."""
        inference = session.inference
        kept = {}
        for obj, prompt in due.items():
            self._add_prompt(session, index, prompt)
            obj_idx = inference.obj_id_to_idx(obj)
            out = self.model._run_single_frame_inference(
                inference_session=inference, frame_idx=index, obj_idx=obj_idx, batch_size=1,
                is_init_cond_frame=True,
                point_inputs=inference.point_inputs_per_obj[obj_idx].pop(index, None),
                mask_inputs=inference.mask_inputs_per_obj[obj_idx].pop(index, None),
                reverse=False, streaming=True,
            )  # fmt: skip
            logit = float(out["object_score_logits"].reshape(-1)[0])
            kept[obj] = Kept(
                out["pred_masks"], out["high_res_masks"], out["object_pointer"], logit, 1.0
            )
        inference.obj_with_new_inputs = []
        for obj, entry in zip(
            kept, self._remember(session, index, list(kept.values()), True), strict=True
        ):
            self._begin(session, obj, index, entry)
        return kept

    # --- the step, from the model's parts ----------------------------------------------------

    def _propose(self, session: Sam2Session, index: int, view: MemoryView) -> Proposal:
        """Memory attention over `view`, then the decoder's multimask candidates."""
        model = self.model
        feats, positions = model._prepare_vision_features(session.inference, index, batch_size=1)
        high_res_features = [
            x.permute(1, 2, 0).view(x.size(1), x.size(2), *size)
            for x, size in zip(feats[:-1], model.backbone_feature_sizes[:-1], strict=True)
        ]
        pix_feat = self._attend(session, index, feats[-1], positions[-1], view)
        device = pix_feat.device
        no_points = torch.zeros(1, 1, 1, 2, dtype=pix_feat.dtype, device=device)
        no_labels = -torch.ones(1, 1, 1, dtype=torch.int32, device=device)
        sparse, dense = model.prompt_encoder(
            input_points=no_points, input_labels=no_labels, input_boxes=None, input_masks=None
        )
        low, ious, tokens, logits = model.mask_decoder(
            image_embeddings=pix_feat,
            image_positional_embeddings=model.get_image_wide_positional_embeddings(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            high_resolution_features=high_res_features,
        )
        present = logits > 0
        low = torch.where(present[:, None, None], low, NO_OBJECT_LOGIT)
        size = (model.image_size, model.image_size)
        high = F.interpolate(
            low.squeeze(1).float(), size=size, mode="bilinear", align_corners=False
        )
        high = high.to(low.dtype)
        return Proposal(
            low_res=low[0, 0][:, None],
            high_res=high[0][:, None],
            tokens=tokens[0, 0],
            affinities=ious[0, 0].float().cpu().numpy(),
            object_logit=float(logits.reshape(-1)[0]),
            boxes=_mask_boxes(high[0] > 0),
        )

    def _attend(
        self,
        session: Sam2Session,
        index: int,
        feats: torch.Tensor,
        positions: torch.Tensor,
        view: MemoryView,
    ) -> torch.Tensor:
        """Current features (HW, 1, C) conditioned on the view -> (1, C, H, W)."""
        model = self.model
        device, channels = feats.device, model.hidden_dim
        height, width = model.backbone_feature_sizes[-1]
        selected, _ = model._select_closest_cond_frames(
            index, view.conditioning, model.config.max_cond_frame_num
        )
        position = session.memory_position
        frames = [(0, e) for e in selected.values()] + list(view.memories)
        memory, memory_pos = model._build_memory_attention_inputs(
            [
                (slot, {"maskmem_features": e.features, "maskmem_pos_enc": position})
                for slot, e in frames
            ],
            device,
        )
        cond = [(index - f, e) for f, e in view.conditioning.items() if f <= index]
        offsets = [offset for offset, _ in cond + view.pointers]
        tokens = [e.pointer.to(device) for _, e in cond + view.pointers]
        pointers, pointer_pos = model._process_object_pointers(
            offsets, tokens, model.config.max_object_pointers_in_encoder, 1, channels, device
        )
        count = 0
        if pointers is not None:
            memory.append(pointers)
            memory_pos.append(pointer_pos)
            count = pointers.shape[0]
        conditioned = model.memory_attention(
            current_vision_features=feats,
            current_vision_position_embeddings=positions,
            memory=torch.cat(memory, dim=0).to(dtype=session.inference.dtype),
            memory_posision_embeddings=torch.cat(memory_pos, dim=0),
            num_object_pointer_tokens=count,
        )
        return conditioned.squeeze(1).transpose(1, 2).view(1, channels, height, width)

    def _keep(self, proposal: Proposal, k: int) -> Kept:
        """Candidate k as the object's result: masks and its object pointer."""
        model = self.model
        pointer = model.object_pointer_proj(proposal.tokens[k][None, None])
        present = float(proposal.object_logit > 0)
        pointer = present * pointer + (1 - present) * model.no_object_pointer
        return Kept(
            proposal.low_res[k : k + 1],
            proposal.high_res[k : k + 1],
            pointer,
            proposal.object_logit,
            float(proposal.affinities[k]),
        )

    def _remember(
        self, session: Sam2Session, index: int, kept: list[Kept], from_prompts: bool
    ) -> list[MemoryEntry]:
        """The memory encoder on the kept masks of frame `index`, one batch for all."""
        if not kept:
            return []
        model = self.model
        feats, _ = model._prepare_vision_features(session.inference, index, batch_size=1)
        features, position = model._encode_new_memory(
            current_vision_feats=feats[-1].expand(-1, len(kept), -1),
            pred_masks_high_res=torch.cat([k.high_res for k in kept]),
            object_score_logits=torch.tensor(
                [[[k.object_logit]] for k in kept], dtype=feats[-1].dtype, device=feats[-1].device
            ),
            is_mask_from_pts=from_prompts,
        )
        if session.memory_position is None:  # the same for every frame: keep one copy
            session.memory_position = position[:, :1].clone()
        return [
            MemoryEntry(features[:, i : i + 1].clone(), k.pointer, k.object_logit, k.affinity)
            for i, k in enumerate(kept)
        ]


def _mask_boxes(masks: torch.Tensor) -> np.ndarray:
    """xyxy boxes (K, 4) of bool masks (K, S, S) in pixel edges; NaN rows for empty masks."""
    size = masks.shape[-1]
    grid = torch.arange(size, device=masks.device)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    y1 = torch.where(rows, grid, size).min(dim=1).values
    y2 = torch.where(rows, grid, -1).max(dim=1).values + 1
    x1 = torch.where(cols, grid, size).min(dim=1).values
    x2 = torch.where(cols, grid, -1).max(dim=1).values + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float().cpu().numpy().astype(np.float64)
    boxes[~rows.any(dim=1).cpu().numpy()] = np.nan
    return boxes
