"""EdgeTAM (Meta, `EdgeTamVideoModel`): SAM 2's streaming tracker with an on-device image
encoder (RepViT through timm) and a perceiver that compresses each memory frame into a few
latents, so a step attends to far fewer tokens.

transformers runs it with SAM 2's processor and the same streaming session API, so this family
is `sam2` with another model class: same prompts (boxes, points, masks), same per-frame
response, same bounded memory and options. Needs `timm` (a dependency) for the image encoder.
"""

from __future__ import annotations

from zooserve.families.sam2.tracker import Sam2Tracker


class EdgeTamTracker(Sam2Tracker):
    """`EdgeTamVideoModel` + `Sam2VideoProcessor`, one streaming inference session per request."""

    family = "edgetam"
    model_class = "EdgeTamVideoModel"
