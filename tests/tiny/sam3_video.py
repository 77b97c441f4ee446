"""Tiny random SAM 3 video model (real `Sam3VideoModel` architecture: the tiny SAM 3 detector of
tests/tiny/sam3.py widened to 128, a `Sam3TrackerVideoModel` without its own vision encoder, and
the tracker neck over the detector's ViT; ~4.7M parameters, 112 px input) with its
`Sam3VideoProcessor`.

Traps this avoids (beyond those of tests/tiny/sam3.py):
- The checkpoint is its own `sam3_video` config, not the image model's.
- The tracker reads the detector's FPN, so the detector's FPN width is the tracker's hidden
  size, and that must be a larger multiple of 64 than 64 (the memory width is fixed at 64).
- The tracker needs the detector's vision config (feature sizes) and the image size both, or
  it falls back to 1008 px and 72x72 feature maps.
- Random weights score every concept ~0.25 (thresholds 0.5/0.7 in released weights find
  nothing) and call every tracked object absent (empty masks drop it): the thresholds are
  lowered so a few detections start tracks, and the tracker's object-score bias is lifted.
- `hotstart_delay` is 0: whole-video propagation holds back (and may drop) objects during the
  hot start, which a stream cannot; with 0 the two modes agree.
- The video processor normalises like the image processor (mean/std 0.5), so the
  whole-video reference sees the pixels a stream sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    Sam2VideoVideoProcessor,
    Sam3ImageProcessor,
    Sam3VideoConfig,
    Sam3VideoModel,
    Sam3VideoProcessor,
)

from tests.tiny import sam3
from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.tiny.clip_tokenizer import byte_level_tokenizer

IMAGE_SIZE = sam3.IMAGE_SIZE
HIDDEN = 128
#: A detection at or above this starts a track (the tiny detector scores 0.25-0.265).
DETECTION_THRESHOLD = 0.26
#: Added to the tracker's object-score head so tracked objects stay present.
OBJECT_SCORE_BIAS = 1.0


def detector_config() -> dict[str, Any]:
    """The tiny SAM 3 detector, widened to the tracker's hidden size."""
    detector = sam3.config().to_dict()
    detector["vision_config"]["fpn_hidden_size"] = HIDDEN
    for part in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config"):
        detector[part]["hidden_size"] = HIDDEN
    detector["mask_decoder_config"]["hidden_size"] = HIDDEN
    detector["text_config"]["projection_dim"] = HIDDEN
    return detector


def config() -> Sam3VideoConfig:
    detector = detector_config()
    grid = IMAGE_SIZE // 14
    tracker = {
        "model_type": "sam3_tracker_video",
        "vision_config": {**detector["vision_config"], "model_type": "sam3_vision_model"},
        "image_size": IMAGE_SIZE,
        "prompt_encoder_config": {
            "hidden_size": HIDDEN,
            "image_size": IMAGE_SIZE,
            "patch_size": 14,
            "mask_input_channels": 4,
        },
        "mask_decoder_config": {
            "hidden_size": HIDDEN,
            "mlp_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        "num_maskmem": 7,
        "max_object_pointers_in_encoder": 4,
        "memory_attention_hidden_size": HIDDEN,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": HIDDEN,
        "memory_encoder_output_channels": 64,
        "mask_downsampler_embed_dim": HIDDEN,
        "memory_fuser_embed_dim": HIDDEN,
        "memory_fuser_intermediate_dim": 64,
        "memory_fuser_num_layers": 1,
    }
    return Sam3VideoConfig(
        detector_config=detector,
        tracker_config=tracker,
        low_res_mask_size=IMAGE_SIZE // 4,
        score_threshold_detection=DETECTION_THRESHOLD,
        new_det_thresh=DETECTION_THRESHOLD,
        hotstart_delay=0,
    )


def processor() -> Sam3VideoProcessor:
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(
            size=size, mask_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4}
        ),
        video_processor=Sam2VideoVideoProcessor(
            size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
        tokenizer=byte_level_tokenizer(sam3.TEXT_LENGTH),
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `Sam3VideoModel` and its processor into `directory`."""
    model = seeded(Sam3VideoModel, config())
    with torch.no_grad():  # tracked objects present (see OBJECT_SCORE_BIAS)
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(OBJECT_SCORE_BIAS)
    return save_checkpoint(directory, model, processor())
