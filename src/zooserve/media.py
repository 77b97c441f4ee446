"""Media access: confine request paths to media_root and decode exact frames from videos or images.

Frame numbers are 0-based indices derived from presentation timestamps, so a frame number means
the same picture whether it is reached by seeking or by decoding forward. Images are treated as
one-frame videos so every pipeline can take either.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image, ImageOps

from zooserve.errors import (
    FramesOutOfRange,
    InvalidInput,
    MediaClosed,
    MediaNotFound,
    MediaTooLarge,
    NotAVideo,
    PathForbidden,
    UnsupportedMedia,
)

SAMPLING_STRATEGIES = ("uniform", "interval", "keyframes", "scene_change")

# Decoding forward is cheaper than a seek (~13 ms) for targets this close to the current position.
_FORWARD_WINDOW = 32
#: FFmpeg demuxers allowed to open a caller's file: real video containers only. Playlists
#: (hls), concat lists, image2 patterns, devices and anything that opens other files or URLs
#: is refused by FFmpeg itself (`format_whitelist`), before it reads a header.
VIDEO_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "mpeg")
#: Options for every `av.open` of untrusted media: allowed demuxers, `file` protocol only.
SAFE_OPEN_OPTIONS = {"format_whitelist": ",".join(VIDEO_DEMUXERS), "protocol_whitelist": "file"}
#: Still-image formats read with PIL (identified by content, not by suffix).
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "WEBP", "TIFF", "GIF")
#: Longest media path a request may give (Linux PATH_MAX is 4096 bytes).
MAX_PATH_CHARS = 1024
#: Default pixel cap per frame when a caller gives none (config: max_frame_pixels).
DEFAULT_MAX_PIXELS = 4096 * 4096


def resolve_media_path(media_root: Path, user_path: str) -> Path:
    """Resolve a caller-given path to an existing file strictly inside media_root.

    Symlinks are followed before the containment check, so a link inside media_root that points
    outside is rejected. Containment is checked before existence so that callers cannot probe
    which files exist outside media_root. Messages never reveal the server's media_root.
    """
    if not user_path or not user_path.strip() or "\x00" in user_path:
        raise InvalidInput("media path must be a non-empty string", {"path": user_path})
    if len(user_path) > MAX_PATH_CHARS:
        raise InvalidInput(
            f"media path is {len(user_path)} characters; the limit is {MAX_PATH_CHARS}",
            {"limit": MAX_PATH_CHARS},
        )
    try:
        root = Path(media_root).resolve()
        resolved = (root / user_path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # loops, unreadable or too-long parts
        raise MediaNotFound(
            f"media path {user_path!r} cannot be resolved", {"path": user_path}
        ) from exc
    if not resolved.is_relative_to(root):
        raise PathForbidden(f"media path {user_path!r} is outside media_root", {"path": user_path})
    try:
        is_file = resolved.is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, EACCES on a component
        is_file = False
    if not is_file:
        raise MediaNotFound(f"media file {user_path!r} not found", {"path": user_path})
    return resolved


def timestamp_of(frame_number: int, fps: float) -> float:
    """Seconds at which a frame is shown; 0.0 for images (fps 0)."""
    return frame_number / fps if fps > 0 else 0.0


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame. eq=False: comparing image arrays element-wise is never what is meant."""

    number: int
    timestamp: float
    image: np.ndarray  # RGB uint8, shape (H, W, 3)


class MediaSource:
    """A video (or an image as a one-frame video) with exact, random frame access.

    Not for concurrent readers: the decoder keeps a position so nearby requests avoid seeks.
    `close()` is safe from any thread at any time: while a read runs in another thread it only
    asks that read to stop, and the reader closes the container when it returns (FFmpeg
    segfaults when a container is closed under `decode()`).
    """

    def __init__(
        self,
        path: Path,
        *,
        frame_count: int,
        fps: float,
        width: int,
        height: int,
        container: Any = None,
        image: np.ndarray | None = None,
    ) -> None:
        self.path = path
        self.frame_count = frame_count
        self.fps = fps
        self.width = width
        self.height = height
        self.is_image = image is not None
        self._image = image
        self._container = container
        self._stream: Any = container.streams.video[0] if container is not None else None
        self._decoder: Iterator[Any] | None = None
        self._next = 0  # frame number the decoder yields next, when _decoder is set
        self._state = threading.Lock()  # guards _readers / _close_requested / _container
        self._readers = 0
        self._close_requested = False

    @classmethod
    def open(cls, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> MediaSource:
        """Open a video or image, judged by its content, never its suffix.

        Images are identified by PIL (PNG, JPEG, ...); everything else must be one of the
        allowed video containers, opened by FFmpeg with a demuxer allowlist and the `file`
        protocol only, so playlists and concat lists never open other files. Frame geometry is
        checked against `max_pixels` before anything is decoded.
        """
        path = Path(path)
        image = _open_image(path, max_pixels)
        if image is not None:
            h, w = image.shape[:2]
            return cls(path, frame_count=1, fps=0.0, width=w, height=h, image=image)
        container = open_container(path)
        try:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            _check_geometry(path, width, height, max_pixels)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            count = stream.frames if stream.frames > 0 else _count_packets(path)
            if not rate or count <= 0:
                raise NotAVideo(f"{path.name!r} has no decodable video frames", {"path": path.name})
        except BaseException:
            container.close()
            raise
        return cls(
            path,
            frame_count=count,
            fps=float(rate),
            width=width,
            height=height,
            container=container,
        )

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the demuxer and decoder; safe to call twice and from any thread.

        A read in progress is asked to stop and closes the container itself when it ends.
        """
        with self._state:
            self._close_requested = True
            if self._readers:
                return
            self._close_now()

    def _close_now(self) -> None:
        """Close the decoder too: FFmpeg's decoding threads live as long as the codec context,
        which an abandoned decode generator (a dropped stream) would otherwise keep alive."""
        decoder, self._decoder = self._decoder, None
        close_decoder = getattr(decoder, "close", None)
        if close_decoder is not None:
            close_decoder()
        if self._container is not None:
            self._container.close()
            self._container = None
        self._stream = None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Hold the container open for one read; refuse to start once closing was asked."""
        with self._state:
            if self._close_requested:
                raise MediaClosed(f"media source {self.path.name!r} is closed")
            self._readers += 1
        try:
            yield
        finally:
            with self._state:
                self._readers -= 1
                if self._close_requested and not self._readers:
                    self._close_now()

    def _check_open(self) -> None:
        """Between frames: stop a long read as soon as its request has ended."""
        if self._close_requested:
            raise MediaClosed(f"media source {self.path.name!r} is closed")

    def read(self, frame_numbers: Sequence[int]) -> list[Frame]:
        """Decode exactly the given frames, returned in the requested order (duplicates allowed).

        Targets are decoded in ascending order so one forward pass serves neighbouring frames.
        Duplicates get their own copy of the image so callers may modify arrays in place.
        """
        numbers = self.validate(frame_numbers)
        decoded: dict[int, np.ndarray] = {}
        with self._reading():
            for n in sorted(set(numbers)):
                self._check_open()
                decoded[n] = self._image_at(n)
        out: list[Frame] = []
        seen: set[int] = set()
        for n in numbers:
            img = decoded[n] if n not in seen else decoded[n].copy()
            seen.add(n)
            out.append(Frame(n, timestamp_of(n, self.fps), img))
        return out

    def iter_range(self, start: int, end: int) -> Iterator[Frame]:
        """Yield frames start..end, INCLUSIVE of both ends, decoding lazily in order.

        The range is validated now, not on first iteration, so a bad request fails before any
        response streaming starts.
        """
        start, end = self._validate_range(start, end)
        return (
            Frame(n, timestamp_of(n, self.fps), self._read_one(n)) for n in range(start, end + 1)
        )

    def _read_one(self, n: int) -> np.ndarray:
        with self._reading():
            return self._image_at(n)

    def sample(
        self,
        strategy: str,
        count: int,
        *,
        interval: int | None = None,
        start: int = 0,
        end: int | None = None,
    ) -> list[int]:
        """Choose up to `count` sorted frame numbers within [start, end] (inclusive).

        uniform: evenly spread, ends included. interval: every `interval` frames (default chosen
        to give about `count`). keyframes: coded keyframes (from packets, no decode), thinned
        evenly; [start] if the range holds none. scene_change: `start` plus the count-1 frames
        that differ most from their predecessor, found by decoding small grayscale thumbnails.
        """
        if strategy not in SAMPLING_STRATEGIES:
            raise InvalidInput(
                f"unknown sampling strategy {strategy!r}; valid: {', '.join(SAMPLING_STRATEGIES)}",
                {"strategy": strategy, "valid": list(SAMPLING_STRATEGIES)},
            )
        if count < 1:
            raise InvalidInput(f"count must be >= 1, got {count}", {"count": count})
        if interval is not None and interval < 1:
            raise InvalidInput(f"interval must be >= 1, got {interval}", {"interval": interval})
        start, end = self._validate_range(start, self.frame_count - 1 if end is None else end)
        span = end - start + 1
        if strategy == "uniform":
            return _evenly(list(range(start, end + 1)), count)
        if strategy == "interval":
            step = interval or max(1, span // count)
            return list(range(start, end + 1, step))[:count]
        if self.is_image:
            return [0]
        with self._reading():  # own containers, but stop with the request all the same
            if strategy == "keyframes":
                keys = [n for n, key in _packet_index(self.path) if key and start <= n <= end]
                return _evenly(sorted(set(keys)), count) or [start]
            return self._scene_changes(start, end, count)

    # -- internals ---------------------------------------------------------------------------

    def validate(self, frame_numbers: Sequence[int]) -> list[int]:
        """Integers in 0..frame_count-1, else FramesOutOfRange naming every offender."""
        try:
            numbers = [operator.index(n) for n in frame_numbers]
        except TypeError as exc:
            raise InvalidInput(
                "frame numbers must be integers", {"frames": repr(frame_numbers)}
            ) from exc
        invalid = [n for n in numbers if not 0 <= n < self.frame_count]
        if invalid:
            raise FramesOutOfRange(
                f"frames {invalid} out of range: {self.path.name!r} has {self.frame_count} frames "
                f"(0..{self.frame_count - 1})",
                {"invalid": invalid, "frame_count": self.frame_count},
            )
        return numbers

    def _validate_range(self, start: int, end: int) -> tuple[int, int]:
        start, end = self.validate([start, end])
        if end < start:
            raise InvalidInput(
                f"end ({end}) is before start ({start})", {"start": start, "end": end}
            )
        return start, end

    def _image_at(self, target: int) -> np.ndarray:
        """Decode the frame numbered `target`, reusing the decoder position when it is close."""
        if self._image is not None:
            return self._image.copy()
        if self._container is None:
            raise InvalidInput(f"media source {self.path.name!r} is closed")
        decoder = self._decoder
        fresh = decoder is None or not self._next <= target < self._next + _FORWARD_WINDOW
        if decoder is None or fresh:
            decoder = self._decoder = _seek(self._container, self._stream, self.fps, target)
        while (frame := self._next_frame(decoder, target)) is not None:
            n = _frame_number(frame.pts, self._stream, self.fps, default=self._next)
            self._next = n + 1
            if n > target and fresh:  # the seek landed after the target: restart from frame 0
                decoder = self._decoder = _seek(self._container, self._stream, self.fps, 0)
                self._next, fresh = 0, False
                continue
            fresh = False
            if n >= target:  # n > target only if pts skip the target (variable frame rate)
                return _to_rgb(frame)
        self._decoder = None
        raise FramesOutOfRange(
            f"frame {target} could not be decoded from {self.path.name!r}",
            {"invalid": [target], "frame_count": self.frame_count},
        )

    def _next_frame(self, decoder: Iterator[Any], target: int) -> Any:
        """Next decoded frame or None at the end; corrupt data becomes a 422, not a 500."""
        try:
            return next(decoder, None)
        except av.FFmpegError as exc:
            self._decoder = None
            raise NotAVideo(
                f"{self.path.name!r}: decoding frame {target} failed: "
                f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                {"frame": target},
            ) from exc

    def _scene_changes(self, start: int, end: int, count: int) -> list[int]:
        """Rank frames by mean absolute difference of 64x36 grayscale thumbnails."""
        scores: list[tuple[float, int]] = []
        prev: np.ndarray | None = None
        with open_container(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in _seek(container, stream, self.fps, start):
                self._check_open()
                n = _frame_number(frame.pts, stream, self.fps, default=start)
                if n > end:
                    break
                if n < start:
                    continue
                thumb = frame.reformat(width=64, height=36, format="gray").to_ndarray()
                cur = thumb.astype(np.int16)
                if prev is not None and n > start:
                    scores.append((float(np.abs(cur - prev).mean()), n))
                prev = cur
        scores.sort(key=lambda s: (-s[0], s[1]))
        return sorted([start, *(n for _, n in scores[: count - 1])])


def _frame_number(pts: int | None, stream: Any, fps: float, *, default: int) -> int:
    """Frame number from pts, so it is right whatever keyframe decoding started from."""
    if pts is None:
        return default
    return round(float((pts - (stream.start_time or 0)) * stream.time_base) * fps)


def _seek(container: Any, stream: Any, fps: float, target: int) -> Iterator[Any]:
    """Seek to the keyframe at or before `target`; returns a fresh decode iterator from there."""
    pts = (stream.start_time or 0) + int(target / fps / stream.time_base)
    container.seek(max(pts, 0), stream=stream, backward=True)
    return iter(container.decode(stream))


def _to_rgb(frame: Any) -> np.ndarray:
    """RGB uint8; yuv420p goes through cv2, ~6x faster than swscale's rgb24 conversion."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def _evenly(items: list[int], count: int) -> list[int]:
    """`count` items spread evenly, both ends kept; floor(x + .5) keeps picks distinct."""
    if count >= len(items):
        return items
    if count == 1:
        return [items[0]]
    idx = np.floor(np.linspace(0, len(items) - 1, count) + 0.5).astype(int)
    return [items[i] for i in idx]


def _packet_index(path: Path) -> list[tuple[int, bool]]:
    """(frame number, is keyframe) for every video packet, by demuxing only (no decoding)."""
    with open_container(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0)
        out: list[tuple[int, bool]] = []
        for packet in container.demux(stream):
            if packet.size:
                n = _frame_number(packet.pts, stream, rate, default=len(out))
                out.append((n, bool(packet.is_keyframe)))
    return out


def _count_packets(path: Path) -> int:
    """Exact frame count when the container stores none (mkv, webm): one packet per frame."""
    try:
        return len(_packet_index(path))
    except (av.FFmpegError, OSError, ValueError, InvalidInput):
        return 0


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


def _open_image(path: Path, max_pixels: int) -> np.ndarray | None:
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
        _check_geometry(path, width, height, max_pixels)
        try:
            # Honour EXIF orientation so phone photos are upright, as viewers show them.
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # truncated or corrupt pixel data
            raise NotAVideo(
                f"{path.name!r} is a damaged image: {str(exc).replace(str(path), path.name)}",
                {"path": path.name},
            ) from exc


def _check_geometry(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse frames with no pixels or more than `max_pixels`, before any decode allocates."""
    if width <= 0 or height <= 0:
        raise NotAVideo(f"{path.name!r} declares an empty frame ({width}x{height})")
    if width * height > max_pixels:
        raise MediaTooLarge(
            f"{path.name!r} has {width}x{height} frames ({width * height} pixels); the limit is "
            f"{max_pixels} pixels (max_frame_pixels)",
            {"width": width, "height": height, "max_frame_pixels": max_pixels},
        )


def check_decoded_size(source: MediaSource, frames: int, limit_mb: float) -> None:
    """Refuse a request that would hold more decoded RGB frames than `limit_mb` at once."""
    nbytes = frames * source.width * source.height * 3
    if nbytes > limit_mb * 1024 * 1024:
        raise MediaTooLarge(
            f"{frames} frames of {source.width}x{source.height} need {nbytes / 2**20:.0f} MB "
            f"decoded; the limit is {limit_mb:.0f} MB (max_decoded_mb): ask for fewer frames",
            {"frames": frames, "width": source.width, "height": source.height},
        )
