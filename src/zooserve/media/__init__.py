"""Media access: confine request paths to media_root, open untrusted files safely, decode exact
frames from videos or images, and choose frames to sample.

Frame numbers are 0-based indices derived from presentation timestamps, so a frame number means
the same picture whether it is reached by seeking or by decoding forward. Images are treated as
one-frame videos so every pipeline can take either.
"""

from zooserve.media.containers import (
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    SAFE_OPEN_OPTIONS,
    VIDEO_DEMUXERS,
    open_container,
)
from zooserve.media.paths import MAX_PATH_CHARS, resolve_media_path
from zooserve.media.sampling import SAMPLING_STRATEGIES
from zooserve.media.source import Frame, MediaSource, check_decoded_size, timestamp_of

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "MAX_PATH_CHARS",
    "SAFE_OPEN_OPTIONS",
    "SAMPLING_STRATEGIES",
    "VIDEO_DEMUXERS",
    "Frame",
    "MediaSource",
    "check_decoded_size",
    "open_container",
    "resolve_media_path",
    "timestamp_of",
]
