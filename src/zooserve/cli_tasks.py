"""`zooserve detect FILE ...`: run a task on a local file, in this process or against a running
server (`--url`), with a progress bar, a table or JSON, and optional annotated output."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import supervision as sv
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zooserve.annotate import annotate, save_png
from zooserve.catalog import Config
from zooserve.media import MediaSource

console = Console(stderr=True)  # progress and tables on stderr keep `--json` stdout clean


def parse_frames(frames: str | None, sample: str | None, media: MediaSource) -> list[int]:
    """`--frames 0,10,20` or `--sample uniform:8` (any sampling strategy:count)."""
    if frames:
        try:
            return [int(f) for f in frames.split(",") if f.strip()]
        except ValueError as exc:
            raise typer.BadParameter(f"--frames must be integers, got {frames!r}") from exc
    strategy, _, count = (sample or "uniform:8").partition(":")
    return media.sample(strategy, int(count or 8))


def detections_of(frame: dict[str, Any]) -> sv.Detections:
    """The API's per-frame JSON back into the in-memory carrier (for drawing)."""
    items = frame["detections"]
    boxes = [[d["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for d in items]
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=np.asarray([d["confidence"] for d in items], np.float32),
        class_id=np.zeros(len(items), int),
        data={"class_name": np.asarray([d["label"] for d in items], str)},
    )


def write_annotated(path: Path, out: Path, result: dict[str, Any]) -> list[Path]:
    """PNG per frame (`OUT.png`, `OUT-<frame>.png` when several) or one video (`OUT.mp4`)."""
    frames = result["frames"]
    with MediaSource.open(path) as media:
        images = media.read([f["frame_number"] for f in frames])
        fps = media.fps or 1.0
    drawn = [annotate(i.image, detections_of(f)) for i, f in zip(images, frames, strict=True)]
    if out.suffix.lower() in (".mp4", ".mkv", ".mov"):
        out.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(out), "w") as container:
            stream = container.add_stream("libx264", rate=max(1, round(fps)))
            stream.height, stream.width = (d - d % 2 for d in drawn[0].shape[:2])
            stream.pix_fmt = "yuv420p"
            for image in drawn:
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image[: stream.height, : stream.width]), format="rgb24"
                )
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        return [out]
    if len(drawn) == 1:
        return [save_png(drawn[0], out)]
    return [
        save_png(image, out.with_name(f"{out.stem}-{f['frame_number']:06d}{out.suffix or '.png'}"))
        for image, f in zip(drawn, frames, strict=True)
    ]


async def _detect_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_detect import to_response
    from zooserve.manager import ModelManager
    from zooserve.pipelines.detect import detect

    # Local runs read any file the user names: its folder is this run's media root.
    local = config.model_copy(update={"media_root": path.parent.resolve()})
    manager = ModelManager(local)
    with Progress(
        TextColumn("detect"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("frames", total=len(set(body["frame_numbers"])))
        try:
            result = await detect(
                manager,
                path.name,
                body["frame_numbers"],
                model=body.get("model"),
                confidence_threshold=body["confidence_threshold"],
                prompts=body.get("prompts"),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        finally:
            await manager.close()
    return to_response(result).model_dump()


def _detect_remote(
    url: str, path: Path, body: dict[str, Any], api_key: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with console.status(f"uploading {path.name} to {url} and detecting"), path.open("rb") as f:
        response = httpx.post(
            f"{url.rstrip('/')}/api/detect",
            files={"file": (path.name, f)},
            data={"request": json.dumps(body)},
            headers=headers,
            timeout=None,
        )
    if response.status_code != 200:
        error = (
            response.json().get("error", {})
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        console.print(
            f"[red]{response.status_code} {error.get('code', '')}[/red]: "
            f"{error.get('message', response.text)}"
        )
        raise typer.Exit(1)
    result: dict[str, Any] = response.json()
    return result


def run_detect(
    config: Config,
    path: Path,
    frames: str | None,
    sample: str | None,
    model: str | None,
    prompts: str | None,
    threshold: float,
    url: str | None,
    api_key: str | None,
    as_json: bool,
    annotate_to: Path | None,
) -> None:
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file")
    with MediaSource.open(path) as media:
        numbers = parse_frames(frames, sample, media)
    body: dict[str, Any] = {"frame_numbers": numbers, "confidence_threshold": threshold}
    if model:
        body["model"] = model
    if prompts:
        body["prompts"] = [p.strip() for p in prompts.split(",") if p.strip()]
    if url:
        result = _detect_remote(url, path, body, api_key)
    else:
        result = asyncio.run(_detect_local(config, path, {**body, "video_path": path.name}))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        table = Table("frame", "time s", "detections", title=f"{path.name} · {result['model']}")
        for f in result["frames"]:
            found = ", ".join(f"{d['label']} {d['confidence']:.2f}" for d in f["detections"])
            table.add_row(str(f["frame_number"]), f"{f['timestamp']:.2f}", found or "-")
        Console().print(table)
    if annotate_to:
        written = write_annotated(path, annotate_to, result)
        console.print("annotated: " + ", ".join(str(p) for p in written))
