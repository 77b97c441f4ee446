"""Frames reached by seeks and keyframe restarts equal a plain decode, on streams where a
restart point is not what it claims: x264 intra refresh (keyframe-flagged P frames that need
frames before them), MPEG-TS/PS (timestamp seeks land after the first keyframe), a stream cut
after its keyframe (no keyframe before the first frames), open GOPs, VFR and B-frames.

The reference is PyAV's own sequential decode, numbered by pts as the service numbers frames
(a frame whose number no pts reaches is the first frame after it). Videos are encoded here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import skimage.data

from zooserve.media import MediaSource
from zooserve.media.source import _to_rgb

N, FPS = 48, 24
_PHOTO = skimage.data.astronaut()[::4, ::4]  # 128x128 of real texture


def _panning(n: int = N) -> Iterator[np.ndarray]:
    """Every frame predicts texture from its references, so a wrong reference shows."""
    for i in range(n):
        yield np.ascontiguousarray(np.roll(_PHOTO, 3 * i, axis=1)[:96])


def _encode(
    path: Path,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    container_format: str | None = None,
    gop: int = 16,
    pts: list[int] | None = None,
) -> Path:
    with av.open(str(path), "w", format=container_format) as container:
        stream: Any = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "mpeg2video":
            stream.codec_context.max_b_frames = 2
        if pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        stream.options = options or {}
        for i, image in enumerate(_panning()):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _cut_before_first_keyframe_ends(source: Path, path: Path, drop: int = 5) -> Path:
    """The same packets without the first `drop` (decode order): the stream starts mid-GOP."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for index, packet in enumerate(p for p in src.demux(stream) if p.size):
            if index >= drop:
                packet.stream = copy
                out.mux(packet)
    return path


X264_BFRAMES = "bframes=3:keyint=16:min-keyint=16:scenecut=0"
VIDEOS: dict[str, Any] = {
    "intra_refresh.mp4": lambda p: _encode(
        p, options={"crf": "10", "x264-params": "intra-refresh=1:keyint=16:bframes=0"}
    ),
    "mpeg2.ts": lambda p: _encode(p, "mpeg2video", container_format="mpegts", gop=12),
    "mpeg2.mpg": lambda p: _encode(p, "mpeg2video", container_format="mpeg", gop=12),
    "open_gop.ts": lambda p: _encode(
        p,
        options={"crf": "10", "x264-params": "open-gop=1:" + X264_BFRAMES},
        container_format="mpegts",
    ),
    "open_gop.mp4": lambda p: _encode(
        p, options={"crf": "10", "x264-params": "open-gop=1:" + X264_BFRAMES}
    ),
    "no_keyframe_first.mp4": lambda p: _cut_before_first_keyframe_ends(
        _encode(p.with_name("whole.mp4"), options={"crf": "10", "bframes": "3"}), p
    ),
    "vfr_bframes.mp4": lambda p: _encode(
        p,
        options={"crf": "10", "bframes": "2"},
        pts=list(np.cumsum([0] + [(41, 10, 90, 5, 200, 41)[i % 6] for i in range(N - 1)])),
    ),
    "hevc_bframes.mp4": lambda p: _encode(
        p, "libx265", {"crf": "10", "x265-params": "bframes=4:keyint=16:log-level=none"}
    ),
}


def _plain_decode(path: Path) -> list[tuple[int, np.ndarray]]:
    """(frame number by pts, RGB image) of every frame a sequential decode outputs."""
    with av.open(str(path)) as container:
        stream: Any = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate)
        start = stream.start_time or 0
        return [
            (round(float((frame.pts - start) * stream.time_base) * fps), _to_rgb(frame))
            for frame in container.decode(stream)
        ]


def _same(image: np.ndarray, reference: np.ndarray | None) -> bool:
    return reference is not None and np.array_equal(image, reference)


def _reference(plain: list[tuple[int, np.ndarray]], target: int) -> np.ndarray | None:
    return next((image for number, image in plain if number >= target), None)


@pytest.fixture(scope="module", params=sorted(VIDEOS))
def video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = VIDEOS[request.param](tmp_path_factory.mktemp("exact") / request.param)
    return path


def _orders(count: int) -> dict[str, list[int]]:
    shuffled = random.Random(7).sample(range(count), count)
    return {
        "ascending": list(range(count)),
        "descending": list(range(count - 1, -1, -1)),
        "shuffled": shuffled,
        "far apart and repeated": [0, count - 1, 0, count // 2, count - 1, 1, count - 2, 3],
    }


def test_every_read_order_gives_the_plain_decode_frames(video: Path) -> None:
    """One read per target on a kept source: every seek, keyframe restart and forward decode
    the decoder chooses must land on the frame a plain decode shows at that number."""
    plain = _plain_decode(video)
    with MediaSource.open(video) as source:
        count = source.frame_count
    for name, order in _orders(count).items():
        wrong = []
        with MediaSource.open(video) as source:
            for target in order:
                expected = _reference(plain, target)
                if expected is None:  # past the last decodable frame: a 422, checked below
                    continue
                if not _same(source.read([target])[0].image, expected):
                    wrong.append(target)
        assert not wrong, f"{video.name} {name}: frames {wrong} differ from a plain decode"


def test_one_batched_read_gives_the_plain_decode_frames(video: Path) -> None:
    plain = _plain_decode(video)
    with MediaSource.open(video) as source:
        wanted = [n for n in _orders(source.frame_count)["shuffled"] if n <= plain[-1][0]]
        frames = source.read(wanted)
    wrong = [f.number for f in frames if not _same(f.image, _reference(plain, f.number))]
    assert not wrong, f"{video.name}: frames {wrong} differ from a plain decode"
