"""Tiny random ViTPose (real `VitPoseForPoseEstimation`, simple decoder, 17 COCO keypoints)
with a `VitPoseImageProcessor` cropping each person box to 64x48 (the released 256x192 / 4)."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    VitPoseBackboneConfig,
    VitPoseConfig,
    VitPoseForPoseEstimation,
    VitPoseImageProcessor,
)

from tests.tiny.checkpoint import label_maps, save_checkpoint, seeded

IMAGE_HEIGHT, IMAGE_WIDTH = 64, 48
COCO_KEYPOINTS = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]


def build(directory: Path) -> Path:
    """Save a seeded tiny ViTPose and its image processor into `directory`."""
    backbone = VitPoseBackboneConfig(
        image_size=[IMAGE_HEIGHT, IMAGE_WIDTH],
        patch_size=[8, 8],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        out_indices=[2],
    )
    config = VitPoseConfig(
        backbone_config=backbone,
        use_simple_decoder=True,
        scale_factor=4,
        **label_maps(COCO_KEYPOINTS),
    )
    model = seeded(VitPoseForPoseEstimation, config)
    processor = VitPoseImageProcessor(size={"height": IMAGE_HEIGHT, "width": IMAGE_WIDTH})
    return save_checkpoint(directory, model, processor)
