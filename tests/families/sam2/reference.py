"""What the SAM2-family parity tests compare against: transformers' documented whole-video
flow with its own model instance, and the prompt cases both SAM 2 and EdgeTAM are run on."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from transformers import Sam2VideoProcessor

from tests.tiny.sam2 import VIDEO_SIZE
from zooserve.families.kinds import TrackPrompt

HEIGHT, WIDTH = VIDEO_SIZE
BOXES = {1: (30.0, 20.0, 90.0, 80.0), 2: (100.0, 10.0, 150.0, 60.0)}

#: case -> (our prompts, the same prompts as transformers' session inputs)
CASES: dict[str, tuple[list[TrackPrompt], dict[str, object]]] = {
    "two boxes": (
        [TrackPrompt(1, 0, box=BOXES[1]), TrackPrompt(2, 0, box=BOXES[2])],
        {"obj_ids": [1, 2], "input_boxes": [[list(BOXES[1]), list(BOXES[2])]]},
    ),
    "points": (
        [TrackPrompt(7, 0, points=((60.0, 50.0), (140.0, 80.0)), point_labels=(1, 0))],
        {
            "obj_ids": 7,
            "input_points": [[[[60.0, 50.0], [140.0, 80.0]]]],
            "input_labels": [[[1, 0]]],
        },
    ),
}


def reference(
    model_class: type, path: Path, frames: list[np.ndarray], **inputs: object
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Masks (N, H, W) and presence probabilities (N,) per frame, from `model_class`
    (Sam2VideoModel, EdgeTamVideoModel: both run with the SAM 2 video processor)."""
    processor = Sam2VideoProcessor.from_pretrained(path, local_files_only=True)
    model = model_class.from_pretrained(path, local_files_only=True).eval()
    session = processor.init_video_session(video=frames, inference_device="cpu")
    # transformers empties the lists it is given (obj_ids): hand it a copy of the shared case
    processor.add_inputs_to_inference_session(session, frame_idx=0, **copy.deepcopy(inputs))
    results = []
    with torch.inference_mode():
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0):
            masks = processor.post_process_masks([out.pred_masks], [[HEIGHT, WIDTH]])[0]
            results.append((masks[:, 0].numpy(), torch.sigmoid(out.object_score_logits).numpy()))
    return results
