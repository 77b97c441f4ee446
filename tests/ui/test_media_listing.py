"""`/api/media` on a real server over an awkward media tree: capped with `truncated: true`,
and names or links it cannot offer are skipped instead of becoming a 500."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.api.test_uploads import face_only_config
from zooserve.api import routes_ui
from zooserve.api.routes_ui import scan_media
from zooserve.api.server import BackgroundServer
from zooserve.api.uploads import UPLOAD_DIR
from zooserve.catalog import load_config


def test_listing_is_capped_and_never_a_500(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "many").mkdir(parents=True)
    for i in range(routes_ui.MAX_LISTED_FILES + 100):
        (media / "many" / f"{i:05d}.jpg").touch()
    with open(os.fsencode(media) + b"/\xff-not-utf8.mp4", "wb"):  # cannot travel in JSON
        pass
    os.symlink(media, media / "many" / "loop")  # a folder link back up: not entered

    with BackgroundServer(load_config(face_only_config(tmp_path, media))) as server:
        response = httpx.get(f"{server.url}/api/media", timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"files": body["files"], "truncated": True}
    assert len(body["files"]) == routes_ui.MAX_LISTED_FILES
    assert all(name.startswith("many/") for name in body["files"])
    assert str(tmp_path) not in response.text


def test_only_media_a_request_could_open_is_listed(tmp_path: Path) -> None:
    media, outside = tmp_path / "media", tmp_path / "outside"
    (media / "real" / "deeper").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jpg").touch()
    (media / "real" / "a.PNG").touch()
    (media / "real" / "deeper" / "clip.mp4").touch()
    (media / "real" / "readme.txt").touch()  # not media
    (media / "inside-link.mp4").symlink_to(media / "real" / "a.PNG")
    (media / "outside-link.jpg").symlink_to(outside / "secret.jpg")  # a request gets a 403
    (media / "dangling.mp4").symlink_to(media / "gone.mp4")
    (media / "folder-link").symlink_to(media / "real")  # listed once, through the real folder
    (media / "real" / "loop").symlink_to(media)
    (media / UPLOAD_DIR / "abc").mkdir(parents=True)
    (media / UPLOAD_DIR / "abc" / "upload.mp4").touch()
    with open(os.fsencode(media) + b"/\xff.mp4", "wb"):
        pass
    assert scan_media(media) == (["inside-link.mp4", "real/a.PNG", "real/deeper/clip.mp4"], False)


def test_a_huge_folder_stops_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes_ui, "MAX_SCANNED_ENTRIES", 10)
    for i in range(30):
        (tmp_path / f"{i:02d}.txt").touch()  # not media, but each entry is looked at
    (tmp_path / "z.mp4").touch()
    files, truncated = scan_media(tmp_path)
    assert truncated is True and len(files) <= 1


def test_a_missing_media_root_lists_nothing(tmp_path: Path) -> None:
    assert scan_media(tmp_path / "nowhere") == ([], False)
