"""Tiny random SAM2 video model (real `Sam2VideoModel` architecture, ~1.1M parameters, 64 px
input) with an offline-built `Sam2VideoProcessor`, shared by the sam2, samurai and sam2long
family tests, and the test video they track.

Traps this avoids:
- Hiera must not put a global-attention block first in a stage (its query pooling happens
  there and assumes windowed attention), so the one global block is the second of stage 3.
- Every hidden size on the image path must agree (FPN = mask decoder = prompt encoder = memory
  attention); the memory channels must be 64 (the memory attention hard-codes 64 key/value
  channels) and be smaller than the hidden size: object pointers are split into hidden/64
  tokens, and with a single token their stacked shape stays 4-D and the concat fails.
- Feature sizes follow the image size: 64 px -> strides 4/8/16 -> 16, 8, 4; the memory
  attention's RoPE and the prompt encoder's mask size must follow the stride-16 map.
- `max_object_pointers_in_encoder` is 4 (16 in released checkpoints): streaming normalises the
  pointers' temporal encoding by this number while the whole-video reference normalises by
  min(num_frames, it); with 4 a 6-frame test video is long enough for both to agree.
- Weights are drawn with std 0.1 instead of 0.02 (see INIT_RANGE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from transformers import (
    Sam2HieraDetConfig,
    Sam2ImageProcessor,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VideoProcessor,
    Sam2VideoVideoProcessor,
    Sam2VisionConfig,
)

from tests.tiny.checkpoint import save_checkpoint, seeded
from tests.videos import encode_video
from zooserve.media import MediaSource

IMAGE_SIZE = 64
HIDDEN = 128
#: The memory attention's cross-attention hard-codes 64 key/value channels.
MEMORY_CHANNELS = 64
MAX_OBJECT_POINTERS = 4
#: Wider than the default 0.02 so masks, scores and candidates differ between prompts and
#: frames (at 0.02 every mask is the same half of the image and every score is 0.5).
INIT_RANGE = 0.1


def config() -> Sam2VideoConfig:
    """The tiny configuration (also used by tests that need to know its numbers)."""
    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        image_size=[IMAGE_SIZE, IMAGE_SIZE],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 2, 1],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
        initializer_range=INIT_RANGE,
    )
    stride16 = IMAGE_SIZE // 16
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[
            [IMAGE_SIZE // 4, IMAGE_SIZE // 4],
            [IMAGE_SIZE // 8, IMAGE_SIZE // 8],
            [stride16, stride16],
        ],
        fpn_hidden_size=HIDDEN,
        initializer_range=INIT_RANGE,
    )
    return Sam2VideoConfig(
        vision_config=vision.to_dict(),
        **shared_parts(),
        memory_attention_num_attention_heads=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[stride16, stride16],
    )


def shared_parts() -> dict[str, object]:
    """The video-config keywords SAM 2 and EdgeTAM (tests/tiny/edgetam.py) share: prompt
    encoder, mask decoder, memory bank and fuser, all at the one hidden size."""
    return {
        "prompt_encoder_config": {
            "hidden_size": HIDDEN,
            "image_size": IMAGE_SIZE,
            "patch_size": 16,
            "mask_input_channels": 4,
            "initializer_range": INIT_RANGE,
        },
        "mask_decoder_config": {
            "hidden_size": HIDDEN,
            "mlp_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
            "initializer_range": INIT_RANGE,
        },
        "image_size": IMAGE_SIZE,
        "initializer_range": INIT_RANGE,
        "num_maskmem": 7,
        "max_object_pointers_in_encoder": MAX_OBJECT_POINTERS,
        "memory_attention_hidden_size": HIDDEN,
        "memory_attention_num_layers": 1,
        "memory_encoder_hidden_size": HIDDEN,
        "memory_encoder_output_channels": MEMORY_CHANNELS,
        "mask_downsampler_embed_dim": HIDDEN,
        "memory_fuser_embed_dim": HIDDEN,
        "memory_fuser_intermediate_dim": 64,
        "memory_fuser_num_layers": 1,
    }


def processor() -> Sam2VideoProcessor:
    """The video processor at the tiny input size (EdgeTAM runs with SAM 2's as well)."""
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(
            size=size, mask_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4}
        ),
        video_processor=Sam2VideoVideoProcessor(size=size),
    )


def build(directory: Path) -> Path:
    """Save a seeded tiny `Sam2VideoModel` and its processor into `directory`."""
    return save_checkpoint(directory, seeded(Sam2VideoModel, config()), processor())


VIDEO_SIZE = (96, 160)  # height, width


def sliding_video(path: Path, frames: int = 10) -> list[np.ndarray]:
    """The astronaut sliding right 3 px a frame on a 160x96 canvas, encoded with PyAV (H.264)
    and decoded back through `MediaSource`: the frames a tracking request would see."""
    tile = np.ascontiguousarray(skimage.data.astronaut()[::4, ::4][:96])  # 96x128
    images = []
    for i in range(frames):
        canvas = np.full((*VIDEO_SIZE, 3), 60, np.uint8)
        canvas[:, 3 * i : 3 * i + 128] = tile[:, : VIDEO_SIZE[1] - 3 * i]
        images.append(canvas)
    encode_video(path, images)
    with MediaSource.open(path) as source:
        return [frame.image for frame in source.iter_range(0, frames - 1)]
