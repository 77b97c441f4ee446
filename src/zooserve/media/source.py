"""Exact, random frame access to one video (or an image as a one-frame video).

Frame numbers are 0-based indices derived from presentation timestamps, so a frame number means
the same picture whether it is reached by seeking or by decoding forward.
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

from zooserve.core.errors import (
    FramesOutOfRange,
    InvalidInput,
    MediaClosed,
    MediaTooLarge,
    NotAVideo,
)
from zooserve.media import sampling
from zooserve.media.containers import (
    DEFAULT_MAX_PIXELS,
    check_geometry,
    checked_frame_count,
    keyframe_numbers,
    open_container,
    open_image,
)
from zooserve.media.decoder import FrameDecoder
from zooserve.media.sampling import SAMPLING_STRATEGIES


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
        self._decoder = (
            FrameDecoder(container, container.streams.video[0], fps) if container else None
        )
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
        image = open_image(path, max_pixels)
        if image is not None:
            h, w = image.shape[:2]
            return cls(path, frame_count=1, fps=0.0, width=w, height=h, image=image)
        container = open_container(path)
        try:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            check_geometry(path, width, height, max_pixels)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            count = checked_frame_count(path, stream, float(rate)) if rate else 0
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
        which an abandoned demux generator (a dropped stream) would otherwise keep alive."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.reset()
        if self._container is not None:
            self._container.close()
            self._container = None

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
        if strategy == "uniform":
            return sampling.evenly_spaced(start, end, count)
        if strategy == "interval":
            return sampling.every_interval(start, end, count, interval)
        if self.is_image:
            return [0]
        with self._reading():  # own containers, but stop with the request all the same
            if strategy == "keyframes":
                keys = keyframe_numbers(self.path, start, end)
                return sampling.pick_evenly(keys, count) or [start]
            return sampling.scene_changes(self.path, self.fps, start, end, count, self._check_open)

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

    @property
    def frames_decoded(self) -> int:
        """Frames FFmpeg decoded so far (targets and what they depend on; 0 for images)."""
        return self._decoder.decoded if self._decoder is not None else 0

    def _image_at(self, target: int) -> np.ndarray:
        """Decode the frame numbered `target` (FrameDecoder picks the cheapest way there)."""
        if self._image is not None:
            return self._image.copy()
        if self._container is None or self._decoder is None:
            raise InvalidInput(f"media source {self.path.name!r} is closed")
        try:
            frame = self._decoder.frame_at(target)
        except av.FFmpegError as exc:  # corrupt data is a 422, not a 500
            self._decoder.reset()
            raise NotAVideo(
                f"{self.path.name!r}: decoding frame {target} failed: "
                f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                {"frame": target},
            ) from exc
        if frame is None:
            raise FramesOutOfRange(
                f"frame {target} could not be decoded from {self.path.name!r}",
                {"invalid": [target], "frame_count": self.frame_count},
            )
        return _to_rgb(frame)


def _to_rgb(frame: Any) -> np.ndarray:
    """RGB uint8; yuv420p goes through cv2, ~6x faster than swscale's rgb24 conversion."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def check_decoded_size(source: MediaSource, frames: int, limit_mb: float) -> None:
    """Refuse a request that would hold more decoded RGB frames than `limit_mb` at once."""
    nbytes = frames * source.width * source.height * 3
    if nbytes > limit_mb * 1024 * 1024:
        raise MediaTooLarge(
            f"{frames} frames of {source.width}x{source.height} need {nbytes / 2**20:.0f} MB "
            f"decoded; the limit is {limit_mb:.0f} MB (max_decoded_mb): ask for fewer frames",
            {"frames": frames, "width": source.width, "height": source.height},
        )
