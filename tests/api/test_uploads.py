"""Uploads a crashed process left in media_root/.uploads are swept when a real server starts:
everything inside .uploads goes, nothing a symlink there points at, nothing outside it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import httpx
import pytest
import yaml

from tests.offline_models import cascade
from zooserve.api.server import BackgroundServer
from zooserve.api.uploads import UPLOAD_DIR, sweep_stale_uploads
from zooserve.catalog import load_config


def face_only_config(folder: Path, media_root: Path, **settings: object) -> Path:
    """A server over `media_root` with only the shipped OpenCV face cascade: starts in ms."""
    config = {
        "device": "cpu",
        "media_root": str(media_root),
        "models": {"face": cascade("haarcascade_frontalface_default.xml", "face")},
        **settings,
    }
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Files outside media_root that symlinks in .uploads point at: they must survive."""
    folder = tmp_path / "outside"
    (folder / "tree").mkdir(parents=True)
    (folder / "keep.txt").write_text("keep")
    (folder / "tree" / "keep.mp4").write_text("keep")
    return folder


def test_server_start_sweeps_stale_uploads_and_nothing_else(
    tmp_path: Path, outside: Path, media_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    media = tmp_path / "media"
    uploads = media / UPLOAD_DIR
    (uploads / "0a1b" / "deeper").mkdir(parents=True)
    (uploads / "0a1b" / "clip.mp4").write_bytes(b"half an upload")
    (uploads / "0a1b" / "deeper" / "x.bin").write_bytes(b"x")
    (uploads / "2c3d").mkdir()
    os.symlink(outside / "keep.txt", uploads / "2c3d" / "file-link.txt")
    os.symlink(outside / "tree", uploads / "2c3d" / "tree-link")
    os.symlink(outside / "tree", uploads / "top-link")  # a symlink right in .uploads
    (uploads / "stray.part").write_bytes(b"")
    (media / "kept.png").write_bytes((media_root / "astronaut.png").read_bytes())

    config = load_config(face_only_config(tmp_path, media))
    with (
        caplog.at_level(logging.INFO, logger="zooserve.api.uploads"),
        BackgroundServer(config) as server,
    ):
        assert list(uploads.iterdir()) == []
        assert "removed 4 stale upload(s)" in caplog.text
        assert (outside / "keep.txt").read_text() == "keep"
        assert (outside / "tree" / "keep.mp4").read_text() == "keep"
        assert (media / "kept.png").is_file()
        # Uploads still work after the sweep, and clean up after themselves.
        response = httpx.post(
            f"{server.url}/api/detect",
            files={"file": ("kept.png", (media / "kept.png").read_bytes(), "image/png")},
            data={"request": '{"model": "face"}'},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert list(uploads.iterdir()) == []


def test_a_symlinked_uploads_folder_is_not_swept_through(tmp_path: Path, outside: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    os.symlink(outside, media / UPLOAD_DIR)
    assert sweep_stale_uploads(media) == 0
    assert (outside / "keep.txt").is_file() and (outside / "tree" / "keep.mp4").is_file()


def test_nothing_to_sweep(tmp_path: Path) -> None:
    assert sweep_stale_uploads(tmp_path / "no-such-media") == 0
    (tmp_path / UPLOAD_DIR).write_text("a file, not a folder")
    assert sweep_stale_uploads(tmp_path) == 0
    assert (tmp_path / UPLOAD_DIR).read_text() == "a file, not a folder"


def test_an_upload_that_cannot_be_stored_is_an_error_without_server_paths(
    tmp_path: Path, media_root: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / UPLOAD_DIR).write_text("a file where the uploads folder should be")
    with BackgroundServer(load_config(face_only_config(tmp_path, media))) as server:
        response = httpx.post(
            f"{server.url}/api/detect",
            files={"file": ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")},
            timeout=60,
        )
    error = response.json()["error"]
    assert response.status_code == 507 and error["code"] == "insufficient_storage"
    assert "upload could not be stored" in error["message"]
    assert str(tmp_path) not in response.text and UPLOAD_DIR not in response.text


@pytest.mark.parametrize(
    ("request_part", "expected"),
    [
        ("[" * 100_000, "nests deeper than"),  # was a RecursionError
        (json.dumps({"frame_numbers": [True] * 50_000}), "invalid request"),  # was a 4.8 MB 422
        (("request.json", b"{}", "application/json"), "one text field"),  # a file, not a field
    ],
)
def test_the_multipart_request_part_is_bounded_and_strict(
    client: httpx.Client, media_root: Path, request_part: object, expected: str
) -> None:
    image = ("a.png", (media_root / "astronaut.png").read_bytes(), "image/png")
    if isinstance(request_part, tuple):
        response = client.post("/api/detect", files={"file": image, "request": request_part})
    else:
        response = client.post("/api/detect", files={"file": image}, data={"request": request_part})
    assert response.status_code == 422, response.text[:300]
    assert expected in response.json()["error"]["message"]
    assert len(response.content) < 20_000
