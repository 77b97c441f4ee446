"""No caller can crash, hang, escape or exhaust the service: each case against a real
`zooserve serve` subprocess (a segfault fails the test instead of killing the test run), with
the offline OpenCV detectors, RapidOCR and ByteTrack."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import yaml
from PIL import Image

from tests import media_corpus
from tests.api import subprocess_server
from tests.offline_models import offline_models
from tests.videos import encode_video
from zooserve.api.server import free_port

#: Requests to the server's media routes for one file (all must be 200 or a clear 4xx).
ROUTES = ("detect", "detect-upload", "enrich", "track", "annotate")
DOWN_ENGINE = f"http://127.0.0.1:{free_port()}"


@dataclass
class Hostile:
    url: str
    process: subprocess.Popen
    corpus: dict[str, str]  # file name -> what it is
    media: Path

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def reset_peak(self) -> int:
        """Reset the kernel's peak-RSS mark of the server (VmHWM); its RSS now."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        return self.rss()

    def peak(self) -> int:
        """The server's peak RSS since the last `reset_peak`, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    base = tmp_path_factory.mktemp("hardening")
    outside = encode_video(base / "secret.mp4", (np.full((32, 32, 3), 200, np.uint8),) * 3)
    media = base / "media"
    corpus = media_corpus.build(media, outside)
    rng = np.random.default_rng(0)
    encode_video(
        media / "long.mp4", (rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(120))
    )
    across, down = np.meshgrid(*[np.linspace(0, 255, 2048).astype(np.uint8)] * 2)
    big = np.dstack([across, down, 255 - across])  # smooth: a small JPEG, 12 MB decoded
    Image.fromarray(big).save(media / "big_2048.png")
    padded = media_corpus.avi_declaring(media / "declares_50000000_padded.avi", 50_000_000)
    with padded.open("r+b") as file:  # sparse: 60 MB that could hold the frames it declares
        file.truncate(60_000_000)
    config = {
        "device": "cpu",
        "memory_budget_mb": 500,
        "media_root": str(media),
        "jobs_db": str(base / "jobs.sqlite3"),
        "max_track_frames": 20,
        "inference_timeout_s": 60,
        "max_decoded_mb": 64,
        "tasks": {
            "object_detection": {"selected": "hog", "options": ["hog", "face"]},
            "video_tracking": {"selected": "hog-bytetrack", "options": ["hog-bytetrack"]},
            "video_summarization": {"selected": "vlm", "options": ["vlm"]},
        },
        "models": {**offline_models(), "vlm": {"model_id": "vlm", "category": "generation"}},
        # Down, as engines sometimes are: summarize samples and decodes, then answers 503.
        "engines": [
            {"name": "down", "kind": "vllm", "base_url": DOWN_ENGINE, "models": ["vlm"]},
        ],
    }
    path = base / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with subprocess_server.running(path) as (url, process):
        yield Hostile(url, process, corpus, media)


def call(client: httpx.Client, route: str, name: str, media: Path) -> httpx.Response:
    if route == "detect":
        return client.post("/api/detect", json={"video_path": name, "frame_numbers": [0]})
    if route == "detect-upload":
        return client.post(
            "/api/detect",
            files={"file": (name, b"" if name == "zero.mp4" else (media / name).read_bytes())},
            data={"request": json.dumps({"frame_numbers": [0]})},
        )
    if route == "enrich":
        return client.post("/api/enrich", json={"video_path": name, "frame_numbers": [0]})
    if route == "track":
        box = {"object_id": 1, "frame_number": 0, "box": [0, 0, 1, 1]}
        return client.post(
            "/api/track",
            json={"video_path": name, "frame_range": {"start": 0, "end": 0}, "prompts": [box]},
        )
    return client.post("/api/annotate", json={"video_path": name, "frame_numbers": [0]})


def test_every_hostile_file_through_every_media_route(hostile: Hostile) -> None:
    url, process, corpus = hostile.url, hostile.process, hostile.corpus
    rss_before = hostile.rss()
    with httpx.Client(base_url=url, timeout=120) as client:
        for name in corpus:
            for route in ROUTES:
                response = call(client, route, name, hostile.media)
                where = (
                    f"{route} {name} ({corpus[name]}): {response.status_code} {response.text[:300]}"
                )
                assert response.status_code == 200 or 400 <= response.status_code < 500, where
                if response.status_code != 200:
                    assert set(response.json()["error"]) >= {"code", "message"}, where
                if name.startswith(("playlist", "concat")):
                    code = response.json()["error"]["code"]
                    assert code == "unsupported_media", where
                assert str(hostile.media) not in response.text, f"server path disclosed: {where}"
        assert process.poll() is None
        assert client.get("/health").status_code == 200
    grown = hostile.rss() - rss_before
    assert grown < 600 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB over the corpus"


def test_small_frames_reach_hog_padded_not_as_a_crash(hostile: Hostile) -> None:
    url, process = hostile.url, hostile.process
    with httpx.Client(base_url=url, timeout=120) as client:
        for name in ("img_200x80.png", "img_39x200.png", "img_1x1.png", "img_63x127.png"):
            response = client.post(
                "/api/detect", json={"video_path": name, "frame_numbers": [0], "model": "hog"}
            )
            assert response.status_code == 200, (name, response.text)
            for det in response.json()["frames"][0]["detections"]:  # never in the padding
                width, height = (int(v) for v in name[4:-4].split("x"))
                assert det["bbox"]["x2"] <= width and det["bbox"]["y2"] <= height
    assert process.poll() is None


def test_cancelling_running_detect_jobs_never_kills_the_server(
    hostile: Hostile,
) -> None:
    url, process = hostile.url, hostile.process
    body = {"video_path": "long.mp4", "frame_numbers": list(range(120)), "model": "hog"}
    with httpx.Client(base_url=url, timeout=120) as client:
        for delay in (0.0, 0.05, 0.2, 0.5, 1.0):
            job = client.post("/api/jobs", json={"task": "detect", "body": body}).json()["job_id"]
            time.sleep(delay)
            assert client.delete(f"/api/jobs/{job}").status_code in (200, 202, 409)
        assert process.poll() is None
        after = client.post("/api/detect", json={**body, "frame_numbers": [0, 1]})
        assert after.status_code == 200, after.text


def test_a_huge_rle_mask_is_refused_before_any_allocation(
    hostile: Hostile,
) -> None:
    url = hostile.url
    rss = hostile.rss()
    prompt = {
        "object_id": 1,
        "frame_number": 0,
        "mask": {"size": [30000, 30000], "counts": "0" + "1" * 3},
    }
    body = {"video_path": "long.mp4", "frame_range": {"start": 0, "end": 1}, "prompts": [prompt]}
    with httpx.Client(base_url=url, timeout=120) as client:
        response = client.post("/api/track", json=body)
        assert response.status_code == 422, response.text
        assert (
            "must be the frame's [height, width] = [480, 640]"
            in response.json()["error"]["message"]
        )
        counts = {"size": [480, 640], "counts": [2**33, 0]}  # overflows pycocotools' uint32
        response = client.post("/api/track", json={**body, "prompts": [{**prompt, "mask": counts}]})
        assert response.status_code == 422, response.text
    grown = hostile.rss() - rss
    assert grown < 200 * 2**20


def test_a_model_of_the_wrong_kind_is_refused_before_it_loads(
    hostile: Hostile,
) -> None:
    url = hostile.url
    with httpx.Client(base_url=url, timeout=120) as client:
        body = {"video_path": "img_200x80.png", "frame_numbers": [0], "model": "ocr"}
        response = client.post("/api/detect", json=body)
        assert (
            response.status_code == 422 and "not a detector" in response.json()["error"]["message"]
        )
        assert client.get("/models/info").json()["models"]["ocr"]["load_count"] == 0


def test_paths_and_ranges_beyond_the_limits_are_clear_422s(
    hostile: Hostile,
) -> None:
    url = hostile.url
    box = {"object_id": 1, "frame_number": 0, "box": [0, 0, 50, 50]}
    with httpx.Client(base_url=url, timeout=120) as client:
        response = client.post("/api/detect", json={"video_path": "a" * 5000, "frame_numbers": [0]})
        assert response.status_code == 422, response.text
        body = {"video_path": "long.mp4", "frame_range": {"start": 0, "end": 50}, "prompts": [box]}
        response = client.post("/api/track", json=body)
        assert response.status_code == 422 and "max_track_frames" in response.text
        with client.stream("POST", "/api/track", json={**body, "stream": True}) as streamed:
            assert streamed.status_code == 200
            lines = [line for line in streamed.iter_lines() if line]
        assert len(lines) == 52  # 51 frames + the summary: a stream needs no bound


@pytest.mark.parametrize("strategy", ["uniform", "interval"])
@pytest.mark.parametrize("declared", [50_000_000, 4_000_000_000])
def test_a_declared_frame_count_is_a_claim_not_an_allocation(
    hostile: Hostile, declared: int, strategy: str
) -> None:
    """A few KB of AVI declaring 5e7 frames made sampling allocate ~1.9 GB; 4e9 was a 500."""
    name = f"declares_{declared}_frames.avi"
    with httpx.Client(base_url=hostile.url, timeout=120) as client:
        before = hostile.reset_peak()
        sampling = {"strategy": strategy, "count": 8}
        enriched = client.post("/api/enrich", json={"video_path": name, "sampling": sampling})
        assert enriched.status_code == 200, enriched.text
        assert [f["frame_number"] for f in enriched.json()["frames"]] == [0, 1, 2]
        body = {"video_path": name, "persona_context": "a guard", "frame_count": 8}
        summary = client.post("/api/summarize", json={**body, "sampling_strategy": strategy})
        assert summary.status_code == 503, summary.text  # sampled and decoded; the engine is down
        assert summary.json()["error"]["code"] == "no_engine_available"
        assert client.get("/health").status_code == 200
    grown = hostile.peak() - before
    assert grown < 150 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MB"


def test_a_sample_count_is_bounded_before_a_plausible_range_is_listed(hostile: Hostile) -> None:
    """60 MB may hold the 5e7 frames its header declares: a count of 1e9 is refused at the
    frame limit instead of listing 5e7 frame numbers first (~2 GB)."""
    sampling = {"strategy": "uniform", "count": 10**9}
    body = {"video_path": "declares_50000000_padded.avi", "sampling": sampling}
    with httpx.Client(base_url=hostile.url, timeout=120) as client:
        before = hostile.reset_peak()
        response = client.post("/api/enrich", json=body)
    assert response.status_code == 422, response.text
    assert "the limit is 256" in response.json()["error"]["message"]
    grown = hostile.peak() - before
    assert grown < 150 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MB"


def test_annotating_one_big_frame_128_times_decodes_it_once(hostile: Hostile) -> None:
    """128 copies of frame 0 of a 2048x2048 image: one decode and one JPEG (max_decoded_mb is
    64 here; 128 decoded copies were 1.5 GB), the JSON written frame by frame."""
    body = {"video_path": "big_2048.png", "frame_numbers": [0] * 128, "model": "face"}
    with httpx.Client(base_url=hostile.url, timeout=120) as client:
        once = client.post("/api/annotate", json={**body, "frame_numbers": [0]})
        assert once.status_code == 200, once.text  # the detector loaded, the code paths warm
        before = hostile.reset_peak()
        response = client.post("/api/annotate", json=body)
        assert response.status_code == 200, response.text
    frames = response.json()["frames"]
    assert [f["frame_number"] for f in frames] == [0] * 128
    assert {f["image"] for f in frames} == {once.json()["frames"][0]["image"]}
    grown = hostile.peak() - before  # ~40-60 MB measured; one decoded frame is 12 MB
    assert grown < 200 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MB"
