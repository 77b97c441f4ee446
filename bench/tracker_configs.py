"""Base-size configs of the tracker families the GPU check builds (bench/checkpoints.py):
SAM 2.1 small, EdgeTAM and SAM 3 video, each from its transformers config class offline, and
their processors' input sizes, so propagation fps are measured at the released resolution."""

from __future__ import annotations

from typing import Any

import transformers


def sam21_small(tiny: Any) -> Any:
    """SAM 2.1 small: Hiera-S (stages 1-2-11-2, global blocks 7/10/13) at 1024 px; the rest
    are the transformers defaults, which are the released SAM 2.1 heads."""
    backbone = transformers.Sam2HieraDetConfig(
        blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13]
    )
    vision = transformers.Sam2VisionConfig(backbone_config=backbone)
    return transformers.Sam2VideoConfig(vision_config=vision.to_dict())


def edgetam_base(tiny: Any) -> Any:
    """EdgeTAM as released: RepViT-M1 through timm (channels 48-96-192-384) at 1024 px; the
    rest (16x16 perceiver latents, SAM 2 heads) are the transformers defaults. The default
    vision config cannot be used: it names no timm architecture (the key is misspelt)."""
    repvit = {"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]}
    vision = {
        "model_type": "edgetam_vision_model",
        "backbone_config": {
            "model_type": "timm_wrapper",
            "architecture": "repvit_m1",
            "num_classes": 1,  # None breaks the wrapper's config (tests/tiny/edgetam.py)
            "do_pooling": False,
            "model_args": repvit,
        },
        "backbone_channel_list": [384, 192, 96, 48],
        "backbone_feature_sizes": [[256, 256], [128, 128], [64, 64]],
    }
    return transformers.EdgeTamVideoConfig(vision_config=vision)


def sam3_base(tiny: Any) -> Any:
    """SAM 3 as released (ViT-L detector, 1008 px, ~860M parameters) with the tiny build's
    detection thresholds: random weights score every concept ~0.25, so at the released
    thresholds nothing would be tracked and only the detector would be timed. Objects are
    capped at 128 (the published figure is for 100+)."""
    keep = ("score_threshold_detection", "new_det_thresh", "hotstart_delay")
    lowered = {key: getattr(tiny, key) for key in keep}
    return transformers.Sam3VideoConfig(max_num_objects=128, **lowered)


#: SAM 3's processor at 1008 px (masks at 288), image and video alike.
SAM3_PROCESSOR = {"target_size": 1008, "video_processor": {"size": {"height": 1008, "width": 1008}}}
SAM3_SIZE = {"size": {"height": 1008, "width": 1008}, "mask_size": {"height": 288, "width": 288}}
#: SAM 2.1's processor at 1024 px (masks at 256), image and video alike.
SAM2_PROCESSOR = {"target_size": 1024, "video_processor": {"size": {"height": 1024, "width": 1024}}}
SAM2_SIZE = {"size": {"height": 1024, "width": 1024}, "mask_size": {"height": 256, "width": 256}}
