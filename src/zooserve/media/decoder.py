"""Exact frames by number from one open video stream, decoding as few frames as it can.

Decoding, not demuxing, is what a request pays for (bikes.mp4: 0.46 ms a frame to decode,
0.003 ms to demux), so packets are read ahead to the target and only what the target depends on
is decoded:
- when a keyframe at or before the target lies ahead, decoding starts there (no seek, nothing
  in between decoded); a seek happens only for a target behind the decoder or far ahead;
- for codecs whose non-reference frames no other frame reads (H.264, HEVC), the non-reference
  frames before the target are not decoded at all (FFmpeg's `skip_frame = NONREF`).
Frame numbers come from presentation timestamps, so a frame is the same picture however it is
reached; tests/test_media.py compares every frame bit for bit with a plain decode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

#: Beyond this many frames ahead a seek beats reading packets forward to the target.
SEEK_BEYOND = 300
#: Codecs whose non-reference frames nothing else decodes from, so skipping them is exact.
SKIPS_NONREF = frozenset({"h264", "hevc"})


class FrameDecoder:
    """The video stream of one open container, read forward with seeks when needed.

    Not thread-safe: MediaSource holds it under its read guard. `decoded` counts the frames
    FFmpeg actually decoded, the figure the skipping saves.
    """

    def __init__(self, container: Any, stream: Any, fps: float) -> None:
        self._container = container
        self._stream = stream
        self._fps = fps
        # pts -> frame number without a Fraction per packet: the same float, a tenth the time.
        self._start = stream.start_time or 0
        self._per_pts = (stream.time_base.numerator, stream.time_base.denominator)
        self._packets: Iterator[Any] | None = None  # demux position; None before the first seek
        self._ahead: deque[Any] = deque()  # demuxed, not yet decoded
        self._out: deque[Any] = deque()  # decoded, not yet handed out
        self._next = 0  # lowest frame number the decoder can still hand out
        self._target = 0
        self._may_skip = stream.codec_context.name in SKIPS_NONREF
        self.decoded = 0

    def frame_at(self, target: int) -> Any:
        """The decoded frame numbered `target` (the first after it when pts skip it: variable
        frame rate), or None when the stream ends first. FFmpeg's errors propagate."""
        fresh = self._packets is None or not self._next <= target < self._next + SEEK_BEYOND
        if fresh:
            self._seek(target)
        self._target = target
        self._start_at_last_keyframe(target)
        while (frame := self._pull()) is not None:
            n = self._next if frame.pts is None else self._number(frame.pts)
            self._next = n + 1
            if n > target and fresh:  # the seek landed after the target: restart from frame 0
                self._seek(0)
                self._start_at_last_keyframe(target)
                fresh = False
                continue
            fresh = False
            if n >= target:
                return frame
        self.reset()
        return None

    def reset(self) -> None:
        """Forget the position (after an error or the end): the next read seeks."""
        packets, self._packets = self._packets, None
        close = getattr(packets, "close", None)
        if close is not None:
            close()
        self._ahead.clear()
        self._out.clear()

    def _seek(self, target: int) -> None:
        """To the keyframe at or before `target`, by timestamp."""
        self.reset()
        stream = self._stream
        pts = (stream.start_time or 0) + int(target / self._fps / stream.time_base)
        self._container.seek(max(pts, 0), stream=stream, backward=True)
        self._next = 0
        self._packets = self._container.demux(stream)

    def _number(self, pts: int) -> int:
        """As containers.frame_number: int / int is the correctly rounded quotient, as
        float(Fraction) is."""
        numerator, denominator = self._per_pts
        return round((pts - self._start) * numerator / denominator * self._fps)

    def _packet_number(self, packet: Any) -> int | None:
        return None if packet.pts is None or not packet.size else self._number(packet.pts)

    def _start_at_last_keyframe(self, target: int) -> None:
        """Demux up to the target; when a keyframe at or before it comes after other packets,
        drop those and the decoder's state: decoding restarts at that keyframe."""
        assert self._packets is not None
        queued, self._ahead = self._ahead, deque()
        jumped = False
        while (packet := queued.popleft() if queued else next(self._packets, None)) is not None:
            n = self._packet_number(packet)
            if packet.is_keyframe and n is not None and n <= target and self._ahead:
                self._ahead.clear()
                jumped = True
            self._ahead.append(packet)
            if n is not None and n >= target:
                break
        self._ahead.extend(queued)
        if jumped:
            self._out.clear()
            self._stream.codec_context.flush_buffers()

    def _pull(self) -> Any:
        """The next decoded frame, feeding packets as needed; None at the end."""
        assert self._packets is not None
        while not self._out:
            packet = self._ahead.popleft() if self._ahead else next(self._packets, None)
            if packet is None:
                return None
            n = self._packet_number(packet)
            skip = self._may_skip and n is not None and n < self._target
            self._stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            frames = self._stream.decode(packet)
            self.decoded += len(frames)
            self._out.extend(frames)
        return self._out.popleft()
