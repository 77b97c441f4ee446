"""Exact frames by number from one open video stream, decoding as few frames as it can.

Decoding, not demuxing, is what a request pays for (bikes.mp4: 0.46 ms a frame to decode,
0.003 ms to demux), so packets are read ahead to the target and only what the target depends on
is decoded:
- when a keyframe at or before the target lies ahead, decoding starts there (no seek, nothing
  in between decoded); a seek happens only for a target behind the decoder or far ahead;
- for codecs whose non-reference frames no other frame reads (H.264, HEVC), the non-reference
  frames before the target are not decoded at all (FFmpeg's `skip_frame = NONREF`).
Frame numbers come from presentation timestamps, so a frame is the same picture however it is
reached: the frame numbered n is the first frame a plain decode of the whole stream shows at
number n or later. Keyframes and seeks are claims of the file, so each restart is checked: the
first frame decoded from it must be a key frame at or before the target. When it is not (x264
intra refresh flags P frames as keyframes; an MPEG-TS seek lands after the keyframe it aimed
for), decoding restarts from the first packet, and after a keyframe that lied, this stream is
decoded forward only. tests/test_media_decode_exact.py compares every frame bit for bit with a
plain decode.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import av

#: Beyond this many frames ahead a seek beats reading packets forward to the target.
SEEK_BEYOND = 300
#: Codecs whose non-reference frames nothing else decodes from, so skipping them is exact.
SKIPS_NONREF = frozenset({"h264", "hevc"})
#: Frames before the target each seek aims, in turn, when the last one landed too late (MP4
#: seeks by decode timestamps, which B-frames put before presentation), then the first packet.
SEEK_BACK = (0, 8, 64)
#: Containers without an index: FFmpeg seeks them by bisecting on timestamps read mid-stream,
#: and the packets after such a seek can carry other timestamps than a read from the start
#: (an MPEG-PS I frame numbered 44.5 instead of 47), so they are read from the first packet.
UNINDEXED = frozenset({"mpeg", "mpegts"})


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
        self._fed = -1  # highest frame number fed to the decoder since it was last emptied
        self._target = 0
        self._may_skip = stream.codec_context.name in SKIPS_NONREF
        self._keyframes_exact = True  # until a keyframe-flagged packet decodes to something else
        self._seekable = container.format.name not in UNINDEXED
        self.decoded = 0

    def frame_at(self, target: int) -> Any:
        """The decoded frame numbered `target` (the first after it when pts skip it: variable
        frame rate), or None when the stream ends first. FFmpeg's errors propagate."""
        behind = self._packets is None or target < self._next
        far = target >= self._next + SEEK_BEYOND and self._keyframes_exact and self._seekable
        landing = self._seek(target, SEEK_BACK[0]) if behind or far else None
        tries = 1
        self._target = target
        while True:
            jumped_to = self._start_at_last_keyframe(target) if self._keyframes_exact else None
            first_at_most = jumped_to if jumped_to is not None else landing
            frame = self._decode_to(target, first_at_most)
            if frame is not _RESTART:
                return frame
            if jumped_to is not None:  # a keyframe-flagged packet that is no restart point
                self._keyframes_exact = False
            if jumped_to is None and tries < len(SEEK_BACK):  # landed too late: aim earlier
                landing, tries = self._seek(target, SEEK_BACK[tries]), tries + 1
            else:
                self._seek_to_start()
                landing, tries = None, len(SEEK_BACK)

    def reset(self) -> None:
        """Forget the position (after an error or the end): the next read seeks."""
        packets, self._packets = self._packets, None
        close = getattr(packets, "close", None)
        if close is not None:
            close()
        self._ahead.clear()
        self._out.clear()
        self._fed = -1

    def _decode_to(self, target: int, first_at_most: int | None) -> Any:
        """Decode up to the target. Decoding that restarted (a seek or a keyframe jump) must
        begin with a key frame at most at `first_at_most` (pts), else _RESTART: that point
        cannot give a plain decode's frame (nor can one that gives no frame at all)."""
        check = first_at_most is not None
        while (frame := self._pull()) is not None:
            n = self._next if frame.pts is None else self._number(frame.pts)
            self._next = n + 1
            if check and not (frame.key_frame and frame.pts is not None):
                return _RESTART
            if check and frame.pts > first_at_most:
                return _RESTART
            check = False
            if n >= target:
                return frame
        self.reset()
        return _RESTART if check else None

    def _seek(self, target: int, back: int) -> int | None:
        """To a keyframe before every frame numbered `target` or more: below the earliest pts
        that rounds to `target` (a frame sharing its number, variable frame rate, is not
        skipped), `back` frames earlier still. Returns that pts bound, or None when it went to
        the first packet instead (nothing before the bound, keyframes that lied, no index, or no
        keyframe indexed before it, as in a stream cut after its keyframe)."""
        numerator, denominator = self._per_pts
        frames = target - 0.5 - back
        below = math.ceil(self._start + frames * denominator / (numerator * self._fps)) - 1
        if not (self._keyframes_exact and self._seekable) or below < self._start:
            self._seek_to_start()
            return None
        self.reset()
        try:
            self._container.seek(below, stream=self._stream, backward=True)
        except av.FFmpegError:
            self._seek_to_start()
            return None
        self._next = 0
        self._packets = self._container.demux(self._stream)
        return below

    def _seek_to_start(self) -> None:
        """To the first packet: 0 (or the first pts when below it) is before every keyframe the
        index holds, and MPEG-TS/PS seeks land on the first packet for it."""
        self.reset()
        self._container.seek(min(0, self._start), stream=self._stream, backward=True)
        self._next = 0
        self._packets = self._container.demux(self._stream)

    def _number(self, pts: int) -> int:
        """As containers.frame_number: int / int is the correctly rounded quotient, as
        float(Fraction) is."""
        numerator, denominator = self._per_pts
        return round((pts - self._start) * numerator / denominator * self._fps)

    def _packet_number(self, packet: Any) -> int | None:
        return None if packet.pts is None or not packet.size else self._number(packet.pts)

    def _start_at_last_keyframe(self, target: int) -> int | None:
        """Demux up to the target; when a keyframe at or before it comes after other packets,
        drop those and the decoder's state: decoding restarts at that keyframe, whose pts this
        returns (None when decoding goes on where it was). Packets stop at the first numbered
        `target` or more, so no frame a plain decode shows for the target is dropped; nor is
        one already decoded."""
        assert self._packets is not None
        if self._fed >= target:
            return None
        queued, self._ahead = self._ahead, deque()
        jumped_to = None
        while (packet := queued.popleft() if queued else next(self._packets, None)) is not None:
            n = self._packet_number(packet)
            if packet.is_keyframe and n is not None and n <= target and self._ahead:
                self._ahead.clear()
                jumped_to = packet.pts
            self._ahead.append(packet)
            if n is not None and n >= target:
                break
        self._ahead.extend(queued)
        if jumped_to is not None:
            self._out.clear()
            self._fed = -1
            self._stream.codec_context.flush_buffers()
        return jumped_to

    def _pull(self) -> Any:
        """The next decoded frame, feeding packets as needed; None at the end."""
        assert self._packets is not None
        while not self._out:
            packet = self._ahead.popleft() if self._ahead else next(self._packets, None)
            if packet is None:
                return None
            n = self._packet_number(packet)
            self._fed = max(self._fed, -1 if n is None else n)
            skip = self._may_skip and n is not None and n < self._target
            self._stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            frames = self._stream.decode(packet)
            self.decoded += len(frames)
            self._out.extend(frames)
        return self._out.popleft()


#: _decode_to's answer when the point decoding restarted from cannot reach the target exactly.
_RESTART = object()
