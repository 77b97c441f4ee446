"""Untrusted media: content decides (not the suffix), playlists never reach other files,
geometry is checked before decoding, and closing never races a decode."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import media_corpus
from tests.videos import encode_video
from zooserve.core.errors import (
    InvalidInput,
    MediaClosed,
    MediaNotFound,
    MediaTooLarge,
    NotAVideo,
    PathForbidden,
    UnsupportedMedia,
    ZooError,
)
from zooserve.media import MediaSource, resolve_media_path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("corpus")
    outside = encode_video(base / "secret.mp4", (np.full((32, 32, 3), 200, np.uint8),) * 3)
    root = base / "media"
    return root, media_corpus.build(root, outside)


REFUSED = {
    "playlist.m3u8": UnsupportedMedia,
    "concat.txt": UnsupportedMedia,
    "concat.ffconcat": UnsupportedMedia,
    "playlist_named.mp4": UnsupportedMedia,  # FFmpeg probes hls by suffix; we by content
    "huge_declared.png": MediaTooLarge,
    "zero.mp4": NotAVideo,
    "random.mp4": NotAVideo,
    "corrupt_header.mp4": NotAVideo,
}


def test_every_corpus_file_opens_or_is_a_clear_4xx(corpus: tuple[Path, dict[str, str]]) -> None:
    root, files = corpus
    for name, what in files.items():
        try:
            with MediaSource.open(root / name) as media:
                frames = media.read([0, media.frame_count - 1])
                assert frames[0].image.shape == (media.height, media.width, 3), what
        except ZooError as exc:
            assert 400 <= exc.status < 500, (name, exc)
            expected = REFUSED.get(name)
            if expected is not None:
                assert isinstance(exc, expected), (name, exc)
        else:
            assert name not in REFUSED, f"{what} was opened"


def test_content_not_suffix_decides(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    with MediaSource.open(root / "png_named.mp4") as media:
        assert media.is_image and (media.width, media.height) == (200, 80)
    with MediaSource.open(root / "mp4_named.png") as media:
        assert not media.is_image and media.frame_count == 6


def test_a_playlist_never_reads_the_file_it_names(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    with pytest.raises(UnsupportedMedia, match="playlists and concat lists are refused"):
        MediaSource.open(root / "playlist.m3u8")


def test_frame_size_is_checked_before_decoding(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    with pytest.raises(MediaTooLarge, match="max_frame_pixels"):
        MediaSource.open(root / "wide_1024x16.mp4", max_pixels=1024 * 15)
    with MediaSource.open(root / "wide_1024x16.mp4", max_pixels=1024 * 16) as media:
        assert media.width == 1024


def test_close_from_another_thread_never_races_a_decode(tmp_path: Path) -> None:
    video = encode_video(
        tmp_path / "long.mp4",
        (np.random.default_rng(i).integers(0, 255, (240, 320, 3), np.uint8) for i in range(60)),
    )
    outcomes: list[str] = []
    for round_ in range(12):
        media = MediaSource.open(video)
        started = threading.Event()

        def read(
            media: MediaSource = media, started: threading.Event = started, last: int = 59 - round_
        ) -> None:
            started.set()
            try:
                media.read([*range(0, 60, 2), last])
                outcomes.append("finished")
            except MediaClosed:
                outcomes.append("stopped")

        reader = threading.Thread(target=read)
        reader.start()
        started.wait()
        media.close()  # before the fix: FFmpeg segfaulted in av_read_frame
        reader.join(timeout=60)
        assert not reader.is_alive()
        assert media._container is None  # the reader closed it when it stopped
    assert "stopped" in outcomes


def test_long_and_odd_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="limit is 1024"):
        resolve_media_path(tmp_path, "a" * 5000)
    with pytest.raises(MediaNotFound):
        resolve_media_path(tmp_path, "a" * 300 + "/b")  # ENAMETOOLONG on one component


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("jail")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "in.mp4").write_bytes(b"x")
    (base / "secret.mp4").write_bytes(b"x")
    os.symlink(base / "secret.mp4", root / "link.mp4")
    os.symlink(base, root / "sub" / "up")
    return root


PARTS = st.sampled_from(["..", ".", "sub", "in.mp4", "link.mp4", "up", "secret.mp4", "", "/", "~"])


@settings(
    max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(PARTS, min_size=1, max_size=8), absolute=st.booleans())
def test_no_path_resolves_outside_media_root(jail: Path, parts: list[str], absolute: bool) -> None:
    """Invariant: whatever the path, the result is inside media_root or a clear 4xx."""
    user_path = ("/" if absolute else "") + "/".join(parts)
    try:
        resolved = resolve_media_path(jail, user_path)
    except (PathForbidden, MediaNotFound, InvalidInput) as exc:
        assert 400 <= exc.status < 500
    else:
        assert resolved.is_relative_to(jail.resolve())


def test_closing_mid_stream_ends_ffmpegs_decoding_threads(tmp_path: Path) -> None:
    """A dropped track stream closes its source with a decode generator half-way: the codec
    context (and FFmpeg's threads) must go with it, even while the source object lives on."""
    import psutil

    video = encode_video(
        tmp_path / "v.mp4",
        (np.random.default_rng(i).integers(0, 255, (240, 320, 3), np.uint8) for i in range(30)),
    )
    process = psutil.Process()
    before = process.num_threads()
    kept = []
    for _ in range(4):
        media = MediaSource.open(video)
        frames = media.iter_range(0, 29)
        next(frames), next(frames)  # a decoder is running
        media.close()
        kept.append((media, frames))  # as a reference cycle in a server would keep them
    assert process.num_threads() <= before, "FFmpeg decoding threads outlived close()"
