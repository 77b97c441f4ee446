"""Hostile and unlucky media for the hardening tests: every file a caller could hand the
service, generated on the spot (nothing downloaded). `build(root, outside)` writes them under
`root` and returns {name: what it is}; `outside` is a real video *outside* the media root
that playlists and concat lists try to reach."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.videos import encode_video


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but whose data is one tiny row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 16))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def avi_declaring(path: Path, declared_frames: int, frames: int = 3) -> Path:
    """A real MJPEG AVI of `frames` 32x32 frames whose headers (avih dwTotalFrames, strh
    dwLength) declare `declared_frames`: a few KB that claim up to 2**32 - 1 frames."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=24)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuvj420p"
        for i in range(frames):
            picture = np.full((32, 32, 3), i * 40, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    for chunk, offset in ((b"avih", 16), (b"strh", 32)):  # field offsets in those structures
        struct.pack_into("<I", data, data.index(chunk) + 8 + offset, declared_frames)
    path.write_bytes(bytes(data))
    return path


def _image(path: Path, width: int, height: int) -> None:
    rng = np.random.default_rng(width * 7919 + height)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def build(root: Path, outside: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, str] = {}
    for width, height in [
        (1, 1),
        (2, 2),
        (3, 1),
        (1, 5000),
        (5000, 1),
        (200, 80),
        (39, 200),
        (200, 96),
        (63, 127),
        (4000, 3),
    ]:
        name = f"img_{width}x{height}.png"
        _image(root / name, width, height)
        corpus[name] = f"a {width}x{height} image"
    video = encode_video(
        root / "tiny_16x16.mp4", (np.full((16, 16, 3), i * 20, np.uint8) for i in range(6))
    )
    encode_video(
        root / "wide_1024x16.mp4",
        (np.random.default_rng(i).integers(0, 255, (16, 1024, 3), np.uint8) for i in range(4)),
    )
    corpus.update({"tiny_16x16.mp4": "a 16x16 video", "wide_1024x16.mp4": "a 64:1 video"})
    for declared in (50_000_000, 4_000_000_000):
        avi_declaring(root / f"declares_{declared}_frames.avi", declared)
        corpus[f"declares_{declared}_frames.avi"] = f"a 3-frame AVI declaring {declared}"
    data = video.read_bytes()
    (root / "zero.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "corrupt_header.mp4").write_bytes(b"\x00" * 64 + data[64:])
    (root / "random.mp4").write_bytes(np.random.default_rng(3).bytes(4096))
    (root / "png_named.mp4").write_bytes((root / "img_200x80.png").read_bytes())
    (root / "mp4_named.png").write_bytes(data)
    (root / "huge_declared.png").write_bytes(png_declaring(100_000, 100_000))
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{outside}\n#EXT-X-ENDLIST\n"
    (root / "playlist.m3u8").write_text(playlist)
    (root / "playlist_named.mp4").write_text(playlist)
    (root / "concat.txt").write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
    (root / "concat.ffconcat").write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
    corpus.update(
        {
            "zero.mp4": "zero bytes",
            "truncated.mp4": "half a video",
            "corrupt_header.mp4": "a video with its header zeroed",
            "random.mp4": "random bytes",
            "png_named.mp4": "a PNG named .mp4",
            "mp4_named.png": "an MP4 named .png",
            "huge_declared.png": "a PNG declaring 100000x100000",
            "playlist.m3u8": "an HLS playlist reaching outside media_root",
            "playlist_named.mp4": "the same playlist named .mp4",
            "concat.txt": "an ffconcat list reaching outside",
            "concat.ffconcat": "an ffconcat list reaching outside",
        }
    )
    return corpus
