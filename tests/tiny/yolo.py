"""Tiny random ultralytics YOLO11 checkpoints (real detect / segment / pose architectures, built
offline from ultralytics' own yaml files, narrowed to ~0.5M parameters) with custom classes.

Needs ultralytics (import this only after `pytest.importorskip("ultralytics")`). Traps:
- A fresh head's class biases are all equal, so every anchor scores the same (~0.01): ties make
  parity checks vacuous. The builder re-draws the classification layers so scores spread out.
- `Model.save` stores weights in fp16, like released checkpoints; `YOLO(path)` reads them back
  as fp32.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import skimage.data
import torch

PLATE_NAMES = ["license_plate"]
DAMAGE_NAMES = ["dent", "scratch", "crack", "glass_shatter", "lamp_broken", "tire_flat"]
POSE_NAMES = ["person"]

#: file name -> (ultralytics yaml, class names)
CHECKPOINTS = {
    "plate.pt": ("yolo11n.yaml", PLATE_NAMES),
    "damage-seg.pt": ("yolo11n-seg.yaml", DAMAGE_NAMES),
    "pose.pt": ("yolo11n-pose.yaml", POSE_NAMES),
}
IMAGE_SIZE = 320
WIDTH_MULTIPLE = 0.125  # yolo11n uses 0.25; half the channels keeps CPU inference fast


def _calibrate_batch_norm(model: torch.nn.Module) -> None:
    """Set every BatchNorm's running statistics from real images, so activations keep unit scale.

    With the default init and running stats of (0, 1), activations shrink layer by layer until
    every anchor gets the same score; recalibrated, the random network responds to its input.
    """
    images = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    batch = (
        torch.stack(
            [
                torch.from_numpy(cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE))).permute(2, 0, 1)
                for image in images
            ]
        ).float()
        / 255
    )
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def _build_one(config: str, names: list[str], path: Path) -> Path:
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO(config)
    layout = dict(yolo.model.yaml)
    scale = layout["scale"]
    depth, _, max_channels = layout["scales"][scale]
    layout["scales"] = {scale: [depth, WIDTH_MULTIPLE, max_channels]}
    layout["nc"] = len(names)
    model = type(yolo.model)(layout, nc=len(names), verbose=False)
    _calibrate_batch_norm(model)
    for branch in model.model[-1].cv3:  # the classification branch of each pyramid level
        torch.nn.init.normal_(branch[-1].bias, mean=-5.0, std=0.5)
    model.names = dict(enumerate(names))
    model.args = {"task": yolo.task}
    model.task = yolo.task
    yolo.model = model
    yolo.save(path)
    return path


def build(directory: Path) -> Path:
    """Write plate.pt (detect), damage-seg.pt (segment) and pose.pt (pose) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for file_name, (config, names) in CHECKPOINTS.items():
        _build_one(config, names, directory / file_name)
    return directory
