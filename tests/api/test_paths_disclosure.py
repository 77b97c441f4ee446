"""No response shows where the server keeps its media: `/api/media` lists paths relative to
media_root, and errors about media, uploads and jobs name only what the caller sent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from zooserve.api.uploads import UPLOAD_DIR


def assert_no_server_paths(response: httpx.Response, media_root: Path) -> None:
    for secret in {str(media_root), str(media_root.resolve()), UPLOAD_DIR + "/"}:
        assert secret not in response.text, f"{response.request.url}: {response.text[:300]}"


def test_media_listing_is_relative_to_media_root(client: httpx.Client, media_root: Path) -> None:
    response = client.get("/api/media")
    assert response.status_code == 200
    assert_no_server_paths(response, media_root)
    body = response.json()
    assert body["truncated"] is False
    assert {"astronaut.png", "walk.mp4"} <= set(body["files"])
    assert not any(name.startswith("/") for name in body["files"])


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [
        ("/api/detect", {"video_path": "missing.mp4"}, 404),
        ("/api/detect", {"video_path": "../../etc/passwd"}, 403),
        ("/api/detect", {"video_path": "/etc/passwd"}, 403),
        ("/api/detect", {"video_path": "notes.mp4", "model": "face"}, 422),
        ("/api/detect", {"video_path": ".", "model": "face"}, 404),
        ("/api/detect", {"video_path": "walk.mp4", "frame_numbers": [10_000]}, 422),
        ("/api/annotate", {"video_path": "missing.mp4"}, 404),
        ("/api/annotate", {"video_path": "notes.mp4", "model": "face"}, 422),
    ],
)
def test_media_errors_name_only_the_callers_path(
    client: httpx.Client, media_root: Path, route: str, body: dict[str, Any], status: int
) -> None:
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    assert_no_server_paths(response, media_root)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("clip.mp4", b"not a video"),
        ("list.m3u8", b"#EXTM3U\n#EXTINF:1,\n/etc/hostname\n"),
        ("../../cut.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ],
)
def test_upload_errors_do_not_show_the_upload_folder(
    client: httpx.Client, media_root: Path, name: str, data: bytes
) -> None:
    response = client.post(
        "/api/detect", files={"file": (name, data)}, data={"request": '{"model": "face"}'}
    )
    assert response.status_code == 422, response.text
    assert_no_server_paths(response, media_root)


def test_failed_job_does_not_show_server_paths(client: httpx.Client, media_root: Path) -> None:
    response = client.post(
        "/api/jobs", json={"task": "detect", "body": {"video_path": "notes.mp4", "model": "face"}}
    )
    assert response.status_code == 202, response.text
    job_url = f"/api/jobs/{response.json()['job_id']}"
    for _ in range(600):  # a state poll, not a timing assertion
        job = client.get(job_url)
        if job.json()["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert job.json()["status"] == "failed", job.text
    assert_no_server_paths(job, media_root)


def test_load_errors_and_model_info_do_not_show_model_folders(
    client: httpx.Client, zoo_config: Path
) -> None:
    """`broken` (corrupt weights) and `owl` live in a temp folder of the server's: a failed
    load, its `last_error` and /models/info name the folder, never its absolute path."""
    import yaml

    models = yaml.safe_load(zoo_config.read_text())["models"]
    folders = {models["broken"]["model_id"], models["owl"]["model_id"]}
    failed = client.post("/models/load", json={"model_id": "broken"})
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "model_load_failed"
    assert failed.json()["error"]["details"]["source"] == "broken-owlv2"
    info = client.get("/models/info")
    for response in (failed, info):
        for folder in folders:
            assert folder not in response.text, response.text[:300]
    assert info.json()["models"]["broken"]["last_error"]
