"""Encode small test videos with PyAV (libx264) from numpy frames."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: int = 24, gop: int = 12) -> Path:
    """Write RGB uint8 frames (all the same even size) to an H.264 file."""
    container = av.open(str(path), "w")
    stream = None
    for image in frames:
        if stream is None:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = image.shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = gop
            stream.options = {"crf": "10"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    assert stream is not None, "no frames"
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path
