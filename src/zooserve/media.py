"""Media access: confine request paths to media_root and decode exact frames from videos or images.

Frame numbers are 0-based indices derived from presentation timestamps, so a frame number means
the same picture whether it is reached by seeking or by decoding forward. Images are treated as
one-frame videos so every pipeline can take either.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image, ImageOps

from zooserve.errors import FramesOutOfRange, InvalidInput, MediaNotFound, NotAVideo, PathForbidden

SAMPLING_STRATEGIES = ("uniform", "interval", "keyframes", "scene_change")

# Decoding forward is cheaper than a seek (~13 ms) for targets this close to the current position.
_FORWARD_WINDOW = 32
# Demuxers PyAV uses for still images (image2, png_pipe, ...): opened with PIL as one frame.
_IMAGE_DEMUXERS = ("image2", "_pipe")


def resolve_media_path(media_root: Path, user_path: str) -> Path:
    """Resolve a caller-given path to an existing file strictly inside media_root.

    Symlinks are followed before the containment check, so a link inside media_root that points
    outside is rejected. Containment is checked before existence so that callers cannot probe
    which files exist outside media_root. Messages never reveal the server's media_root.
    """
    if not user_path or not user_path.strip() or "\x00" in user_path:
        raise InvalidInput("media path must be a non-empty string", {"path": user_path})
    try:
        root = Path(media_root).resolve()
        resolved = (root / user_path).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, unreadable components
        raise MediaNotFound(
            f"media path {user_path!r} cannot be resolved", {"path": user_path}
        ) from exc
    if not resolved.is_relative_to(root):
        raise PathForbidden(f"media path {user_path!r} is outside media_root", {"path": user_path})
    if not resolved.is_file():
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

    Not thread-safe: the decoder keeps a position so nearby requests avoid seeks. Open one per
    request, preferably as a context manager so the container is closed.
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

    @classmethod
    def open(cls, path: Path) -> MediaSource:
        """Open a video or image; NotAVideo if neither PyAV nor PIL can read a picture from it."""
        path = Path(path)
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError, ValueError):
            return cls._open_image(path)
        if not container.streams.video or container.format.name.endswith(_IMAGE_DEMUXERS):
            container.close()
            return cls._open_image(path)
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        count = stream.frames if stream.frames > 0 else _count_packets(path)
        if not rate or count <= 0 or not stream.codec_context.width:
            container.close()
            raise NotAVideo(f"{path.name!r} has no decodable video frames", {"path": path.name})
        return cls(
            path,
            frame_count=count,
            fps=float(rate),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            container=container,
        )

    @classmethod
    def _open_image(cls, path: Path) -> MediaSource:
        try:
            with Image.open(path) as img:
                # Honour EXIF orientation so phone photos are upright, as viewers show them.
                rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # plugins (e.g. ultralytics' HEIF hook) raise other types
            raise NotAVideo(f"{path.name!r} is not a video or image", {"path": path.name}) from exc
        h, w = rgb.shape[:2]
        return cls(path, frame_count=1, fps=0.0, width=w, height=h, image=rgb)

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the demuxer and decoder; safe to call twice."""
        if self._container is not None:
            self._container.close()
            self._container = None
            self._decoder = None

    def read(self, frame_numbers: Sequence[int]) -> list[Frame]:
        """Decode exactly the given frames, returned in the requested order (duplicates allowed).

        Targets are decoded in ascending order so one forward pass serves neighbouring frames.
        Duplicates get their own copy of the image so callers may modify arrays in place.
        """
        numbers = self.validate(frame_numbers)
        decoded: dict[int, np.ndarray] = {}
        for n in sorted(set(numbers)):
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
            Frame(n, timestamp_of(n, self.fps), self._image_at(n)) for n in range(start, end + 1)
        )

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
                f"{self.path.name!r}: decoding frame {target} failed: {exc}", {"frame": target}
            ) from exc

    def _scene_changes(self, start: int, end: int, count: int) -> list[int]:
        """Rank frames by mean absolute difference of 64x36 grayscale thumbnails."""
        scores: list[tuple[float, int]] = []
        prev: np.ndarray | None = None
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in _seek(container, stream, self.fps, start):
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
    with av.open(str(path)) as container:
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
    except (av.FFmpegError, OSError, ValueError):
        return 0
