"""Real decoding tests for zooserve.media: videos are encoded with PyAV, no mocks."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from zooserve.core.errors import (
    FramesOutOfRange,
    InvalidInput,
    MediaNotFound,
    NotAVideo,
    PathForbidden,
)
from zooserve.media import SAMPLING_STRATEGIES, Frame, MediaSource, resolve_media_path

N, FPS, W, H, GOP, CUT = 60, 24, 64, 48, 12, 30


def _frame_image(i: int) -> np.ndarray:
    """Top half: gray level 4*i encodes the index. Bottom half: dark before CUT, bright after."""
    img = np.empty((H, W, 3), np.uint8)
    img[: H // 2] = 4 * i
    img[H // 2 :] = 20 if i < CUT else 220
    return img


def _index_of(image: np.ndarray) -> int:
    level = float(image[4 : H // 2 - 4, 8:-8].mean())
    assert abs(level / 4 - round(level / 4)) < 0.4, f"ambiguous level {level}"
    return round(level / 4)


def _encode(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.codec_context.gop_size = GOP
    stream.options = {"crf": "8"}
    for i in range(N):
        frame = av.VideoFrame.from_ndarray(_frame_image(i), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module", params=["mp4", "mkv"])
def video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mp4 stores a frame count; mkv does not, so its count comes from demuxing packets."""
    return _encode(tmp_path_factory.mktemp("video") / f"clip.{request.param}")


def _check(frames: list[Frame], expected: list[int]) -> None:
    assert [f.number for f in frames] == expected
    for f, i in zip(frames, expected, strict=True):
        assert f.image.dtype == np.uint8 and f.image.shape == (H, W, 3)
        assert _index_of(f.image) == i
        assert f.timestamp == pytest.approx(i / FPS)


def test_open_reports_stream_properties(video: Path) -> None:
    with MediaSource.open(video) as src:
        assert (src.frame_count, src.fps, src.width, src.height) == (N, FPS, W, H)
        assert not src.is_image


def test_read_returns_exact_frames_in_requested_order(video: Path) -> None:
    wanted = [45, 3, 3, 59, 0, 20]
    with MediaSource.open(video) as src:
        frames = src.read(wanted)
        _check(frames, wanted)
        assert frames[1].image is not frames[2].image  # duplicates do not share an array
        _check(src.read([58, 1, 30, 29]), [58, 1, 30, 29])  # backwards after a late read


def test_read_every_frame_individually_backwards(video: Path) -> None:
    with MediaSource.open(video) as src:
        for i in reversed(range(N)):
            _check(src.read([i]), [i])


def test_out_of_range_frames_are_named(video: Path) -> None:
    with MediaSource.open(video) as src, pytest.raises(FramesOutOfRange) as err:
        src.read([5, -1, 60, 100])
    assert err.value.details == {"invalid": [-1, 60, 100], "frame_count": N}
    assert "-1" in err.value.message and "100" in err.value.message
    assert err.value.status == 422


def test_iter_range_is_inclusive_and_exact(video: Path) -> None:
    with MediaSource.open(video) as src:
        _check(list(src.iter_range(10, 27)), list(range(10, 28)))
        _check(list(src.iter_range(59, 59)), [59])
        with pytest.raises(InvalidInput):
            src.iter_range(20, 10)  # validated eagerly, before iteration
        with pytest.raises(FramesOutOfRange):
            src.iter_range(50, 60)


def test_sampling_strategies(video: Path) -> None:
    with MediaSource.open(video) as src:
        assert src.sample("uniform", 5) == [0, 15, 30, 44, 59]
        assert src.sample("uniform", 100) == list(range(N))
        assert src.sample("uniform", 3, start=10, end=20) == [10, 15, 20]
        assert src.sample("interval", 4, interval=10) == [0, 10, 20, 30]
        assert src.sample("interval", 6) == [0, 10, 20, 30, 40, 50]
        keys = src.sample("keyframes", 100)
        assert keys[0] == 0 and keys == sorted(set(keys)) and set(keys) <= set(range(N))
        assert 2 <= len(keys) <= N // GOP + 1  # gop 12 (x264 may add scene-cut keyframes)
        assert len(src.sample("keyframes", 2)) == 2
        assert src.sample("scene_change", 2) == [0, CUT]
        picks = src.sample("scene_change", 4, start=5, end=50)
        assert len(picks) == 4 and picks[0] == 5 and CUT in picks and picks == sorted(picks)
        _check(src.read(picks), picks)  # sampling did not disturb exact reads


def test_sampling_rejects_bad_arguments(video: Path) -> None:
    with MediaSource.open(video) as src:
        with pytest.raises(InvalidInput) as err:
            src.sample("random", 3)
        assert all(s in err.value.message for s in SAMPLING_STRATEGIES)
        with pytest.raises(InvalidInput):
            src.sample("uniform", 0)
        with pytest.raises(FramesOutOfRange):
            src.sample("uniform", 3, end=N)
        with pytest.raises(InvalidInput):
            src.sample("uniform", 3, start=20, end=10)


def test_image_is_a_one_frame_video(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "still.png")
    with MediaSource.open(tmp_path / "still.png") as src:
        assert (src.is_image, src.frame_count, src.fps, src.width, src.height) == (
            True,
            1,
            0.0,
            40,
            30,
        )
        (frame,) = src.read([0])
        assert frame.number == 0 and frame.timestamp == 0.0
        np.testing.assert_array_equal(frame.image, pixels)
        assert [f.number for f in src.iter_range(0, 0)] == [0]
        assert all(src.sample(s, 3) == [0] for s in SAMPLING_STRATEGIES)
        with pytest.raises(FramesOutOfRange):
            src.read([1])


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(NotAVideo) as err:
        MediaSource.open(tmp_path / "x.mp4")
    assert err.value.status == 422


@pytest.fixture()
def media_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(root / "sub" / "clip.mp4", root / "alias.mp4")
    return root


def test_resolve_accepts_paths_inside_media_root(media_root: Path) -> None:
    target = (media_root / "sub" / "clip.mp4").resolve()
    assert resolve_media_path(media_root, "sub/clip.mp4") == target
    assert resolve_media_path(media_root, "sub/../sub/./clip.mp4") == target
    assert resolve_media_path(media_root, str(target)) == target
    assert resolve_media_path(media_root, "alias.mp4") == target  # symlink staying inside


@pytest.mark.parametrize("user_path", ["../secret.txt", "../../../etc/passwd", "/etc/passwd"])
def test_resolve_rejects_escapes(media_root: Path, user_path: str) -> None:
    with pytest.raises(PathForbidden) as err:
        resolve_media_path(media_root, user_path)
    assert err.value.status == 403
    assert str(media_root) not in err.value.message


def test_resolve_rejects_symlink_pointing_outside(media_root: Path) -> None:
    with pytest.raises(PathForbidden):
        resolve_media_path(media_root, "escape.txt")


def test_resolve_missing_and_empty(media_root: Path) -> None:
    with pytest.raises(MediaNotFound) as err:
        resolve_media_path(media_root, "sub/nope.mp4")
    assert err.value.status == 404
    with pytest.raises(MediaNotFound):
        resolve_media_path(media_root, "sub")  # a directory is not a media file
    with pytest.raises(InvalidInput):
        resolve_media_path(media_root, "")


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A panning photo: every P and B frame predicts real texture from its references, so a frame
    decoded from a wrong or missing reference differs pixel by pixel."""
    import skimage.data

    from tests.videos import encode_video

    photo = skimage.data.astronaut()[::4, ::4]  # 128x128
    frames = (np.ascontiguousarray(np.roll(photo, 3 * i, axis=1)[:96]) for i in range(72))
    return encode_video(tmp_path_factory.mktemp("moving") / "pan.mp4", frames, gop=24)


def test_scattered_reads_are_bit_exact_and_skip_what_no_target_needs(
    moving: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame reached by keyframe jumps and non-reference skipping equals the same frame
    from a plain decode of the whole clip; the skipping decodes fewer frames."""
    from zooserve.media import decoder

    with MediaSource.open(moving) as src:
        plain = [f.image for f in src.iter_range(0, src.frame_count - 1)]
    wanted = [0, 11, 30, 47, 48, 71, 35, 5]  # spread, then backwards
    with MediaSource.open(moving) as src:
        for frame in src.read(wanted):
            assert np.array_equal(frame.image, plain[frame.number]), frame.number
        skipping = src.frames_decoded
    monkeypatch.setattr(decoder, "SKIPS_NONREF", frozenset())
    with MediaSource.open(moving) as src:
        assert all(np.array_equal(f.image, plain[f.number]) for f in src.read(wanted))
        assert src.frames_decoded > skipping  # non-reference frames before targets were skipped
    with MediaSource.open(moving) as src:
        for n in range(0, 72, 5):  # every fifth frame, one read at a time
            assert np.array_equal(src.read([n])[0].image, plain[n]), n


def test_a_keyframe_ahead_is_jumped_to_not_decoded_up_to(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From frame 1 to frame 50 (keyframes every 12): decoding restarts at the keyframe before
    50 instead of decoding the 48 frames in between."""
    from zooserve.media import decoder

    monkeypatch.setattr(decoder, "SKIPS_NONREF", frozenset())  # count every frame decoded
    with MediaSource.open(video) as src:
        _check(src.read([1, 50]), [1, 50])
        assert src.frames_decoded <= 2 + GOP + 4  # 0-1, then the keyframe's GOP up to 50
