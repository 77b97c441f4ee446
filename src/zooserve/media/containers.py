"""Opening untrusted media: which containers and images are accepted, what their headers may
claim, and the demux-only walks (packet counts, keyframes) that check those claims.

A header is a claim made by whoever wrote the file. Frame geometry is checked against the
configured caps before anything is decoded, and a declared frame count is believed only when
the file could hold that many frames; otherwise the packets are counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageOps

from zooserve.core.errors import InvalidInput, MediaTooLarge, NotAVideo, UnsupportedMedia

#: FFmpeg demuxers allowed to open a caller's file: real video containers only. Playlists
#: (hls), concat lists, image2 patterns, devices and anything that opens other files or URLs
#: is refused by FFmpeg itself (`format_whitelist`), before it reads a header.
VIDEO_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "mpeg")
#: Options for every `av.open` of untrusted media: allowed demuxers, `file` protocol only.
SAFE_OPEN_OPTIONS = {"format_whitelist": ",".join(VIDEO_DEMUXERS), "protocol_whitelist": "file"}
#: Still-image formats read with PIL (identified by content, not by suffix).
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "WEBP", "TIFF", "GIF")
#: Default pixel cap per frame when a caller gives none (config: max_frame_pixels).
DEFAULT_MAX_PIXELS = 4096 * 4096
#: How far a declared frame count may exceed duration x rate before it is counted instead
#: (rounding of rates and durations stays well inside it).
_DURATION_SLACK = 1.25


def open_container(path: Path) -> Any:
    """`av.open` for untrusted files: allowed demuxers and the `file` protocol only.

    UnsupportedMedia when FFmpeg recognises a format outside the allowlist (playlists, concat
    lists, image patterns: they would open other files), NotAVideo when it reads no video.
    """
    try:
        container = av.open(str(path), options=dict(SAFE_OPEN_OPTIONS))
    except av.ArgumentError as exc:  # EINVAL: the probed demuxer is not on the allowlist
        raise UnsupportedMedia(
            f"{path.name!r} is not an allowed media container (allowed: mp4/mov, mkv/webm, avi, "
            "mpeg-ts/ps video, and PNG/JPEG/BMP/WebP/TIFF/GIF images); playlists and concat "
            "lists are refused",
            {"path": path.name},
        ) from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        if _looks_like_a_list(path):
            raise UnsupportedMedia(
                f"{path.name!r} is a playlist or concat list; only video and image files are "
                "accepted",
                {"path": path.name},
            ) from exc
        raise NotAVideo(f"{path.name!r} is not a video or image", {"path": path.name}) from exc
    if container.format.name not in VIDEO_DEMUXERS or not container.streams.video:
        container.close()
        raise NotAVideo(f"{path.name!r} has no video stream", {"path": path.name})
    return container


def _looks_like_a_list(path: Path) -> bool:
    """HLS playlists and ffconcat lists that FFmpeg did not probe as such (wrong suffix):
    named for what they are rather than "not a video"."""
    try:
        with path.open("rb") as file:
            head = file.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith((b"#EXTM3U", b"ffconcat", b"file '", b'file "'))


def open_image(path: Path, max_pixels: int) -> np.ndarray | None:
    """The file as an RGB array when PIL identifies an allowed image format, else None."""
    try:
        img = Image.open(path, formats=list(IMAGE_FORMATS))
    except Image.DecompressionBombError as exc:
        raise MediaTooLarge(
            f"{path.name!r} declares more pixels than allowed", {"path": path.name}
        ) from exc
    except Exception:  # not an image PIL knows: maybe a video
        return None
    with img:
        width, height = img.size
        check_geometry(path, width, height, max_pixels)
        try:
            # Honour EXIF orientation so phone photos are upright, as viewers show them.
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # truncated or corrupt pixel data
            raise NotAVideo(
                f"{path.name!r} is a damaged image: {str(exc).replace(str(path), path.name)}",
                {"path": path.name},
            ) from exc


def check_geometry(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse frames with no pixels or more than `max_pixels`, before any decode allocates."""
    if width <= 0 or height <= 0:
        raise NotAVideo(f"{path.name!r} declares an empty frame ({width}x{height})")
    if width * height > max_pixels:
        raise MediaTooLarge(
            f"{path.name!r} has {width}x{height} frames ({width * height} pixels); the limit is "
            f"{max_pixels} pixels (max_frame_pixels)",
            {"width": width, "height": height, "max_frame_pixels": max_pixels},
        )


def checked_frame_count(path: Path, stream: Any, rate: float) -> int:
    """Frames in the video stream: the header's count when the file could hold it, else counted.

    An AVI header's count is a 32-bit field anyone can set to 4e9 in a 10 KB file, and every
    frame number, range and sample is checked against this count. So it is believed only when
    the file has at least a byte per declared frame and the stream's duration x rate agrees;
    otherwise (and when no count is stored, as in mkv) the packets are counted by demuxing,
    which costs what the file holds, not what it claims.
    """
    declared = int(stream.frames or 0)
    if 0 < declared <= _frames_the_file_can_hold(path, stream, rate):
        return declared
    return count_packets(path)


def _frames_the_file_can_hold(path: Path, stream: Any, rate: float) -> int:
    """Every coded frame takes at least a byte of the file, and lasts 1/rate of its duration."""
    try:
        most = path.stat().st_size
    except OSError:
        return 0
    if stream.duration and stream.time_base and rate > 0:
        seconds = float(stream.duration * stream.time_base)
        most = min(most, math.ceil(seconds * rate * _DURATION_SLACK) + 1)
    return most


def count_packets(path: Path) -> int:
    """Exact frame count by demuxing only (one non-empty packet per frame); 0 when unreadable."""
    try:
        with open_container(path) as container:
            return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
    except (av.FFmpegError, OSError, ValueError, InvalidInput):
        return 0


def keyframe_numbers(path: Path, start: int, end: int) -> list[int]:
    """Sorted, distinct numbers of the coded keyframes in start..end, from packets (no decode)."""
    with open_container(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0)
        found: set[int] = set()
        position = 0  # packets without a pts count as the next frame
        for packet in container.demux(stream):
            if not packet.size:
                continue
            n = frame_number(packet.pts, stream, rate, default=position)
            position += 1
            if packet.is_keyframe and start <= n <= end:
                found.add(n)
    return sorted(found)


def frame_number(pts: int | None, stream: Any, fps: float, *, default: int) -> int:
    """Frame number from pts, so it is right whatever keyframe decoding started from."""
    if pts is None:
        return default
    return round(float((pts - (stream.start_time or 0)) * stream.time_base) * fps)


def seek(container: Any, stream: Any, fps: float, target: int) -> Iterator[Any]:
    """Seek to the keyframe at or before `target`; returns a fresh decode iterator from there."""
    pts = (stream.start_time or 0) + int(target / fps / stream.time_base)
    container.seek(max(pts, 0), stream=stream, backward=True)
    return iter(container.decode(stream))
