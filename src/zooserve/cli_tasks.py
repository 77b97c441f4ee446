"""`zooserve detect|track|enrich|summarize|ocr FILE ...`: run a task on a local file, in this
process or against a running server (`--url`), with a progress bar, a table or JSON, and
optional annotated output.

With `--url` nothing local is needed but the file: no config is read (a task takes the config
or a loader, called only for a local run). Results go to stdout; progress and every error go
to stderr, so `--json` output can be piped. Heavy imports (numpy, supervision, the pipelines)
are made where they are used: the `zooserve` command starts without them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from zooserve.catalog import Config
    from zooserve.media import MediaSource

console = Console(stderr=True)  # progress and errors on stderr keep `--json` stdout clean


def load_config_or_exit(path: Path | None) -> Config:
    """The config at `path` (default: $ZOOSERVE_CONFIG or config/models.yaml); an invalid or
    missing one is reported on stderr with exit code 2."""
    from zooserve.catalog import load_config
    from zooserve.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc


def config_loader(path: Path | None) -> Callable[[], Config]:
    """A loader for the tasks below that reads `path` only when a task runs here."""
    return lambda: load_config_or_exit(path)


def _resolve(config: Config | Callable[[], Config]) -> Config:
    return config() if callable(config) else config


def fail(exc: Exception) -> typer.Exit:
    """Report a ZooError (status, code, message) on stderr; the exit to raise (code 1)."""
    status, code = getattr(exc, "status", ""), getattr(exc, "code", type(exc).__name__)
    console.print(f"[red]{status} {code}[/red]: {getattr(exc, 'message', str(exc))}")
    return typer.Exit(1)


def parse_frames(frames: str | None, sample: str | None, media: MediaSource) -> list[int]:
    """`--frames 0,10,20` or `--sample uniform:8` (any sampling strategy:count)."""
    if frames:
        try:
            return [int(f) for f in frames.split(",") if f.strip()]
        except ValueError as exc:
            raise typer.BadParameter(f"--frames must be integers, got {frames!r}") from exc
    strategy, _, count = (sample or "uniform:8").partition(":")
    return media.sample(strategy, int(count or 8))


def write_annotated(path: Path, out: Path, result: dict[str, Any]) -> list[Path]:
    """PNG per frame (`OUT.png`, `OUT-<frame>.png` when several) or one video (`OUT.mp4`)."""
    from zooserve.annotate import annotate, detections_from_api, save_mp4, save_png
    from zooserve.media import MediaSource

    frames = result["frames"]
    with MediaSource.open(path) as media:
        images = media.read([f["frame_number"] for f in frames])
        fps = media.fps or 1.0
    drawn = [annotate(i.image, detections_from_api(f)) for i, f in zip(images, frames, strict=True)]
    if out.suffix.lower() in (".mp4", ".mkv", ".mov"):
        return [save_mp4(drawn, out, fps)]
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

    manager = ModelManager(_local_config(config, path))
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


def run_detect(
    config: Config | Callable[[], Config],
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
    """`config` is read only for a local run (`url` None)."""
    from zooserve.errors import ZooError
    from zooserve.media import MediaSource

    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file")
    try:
        with MediaSource.open(path) as media:
            numbers = parse_frames(frames, sample, media)
    except ZooError as exc:
        raise fail(exc) from exc
    body: dict[str, Any] = {"frame_numbers": numbers, "confidence_threshold": threshold}
    if model:
        body["model"] = model
    if prompts:
        body["prompts"] = [p.strip() for p in prompts.split(",") if p.strip()]
    if url:
        result = post_upload(url, "detect", path, body, api_key)
    else:
        local = _resolve(config)
        try:
            result = asyncio.run(_detect_local(local, path, {**body, "video_path": path.name}))
        except ZooError as exc:
            raise fail(exc) from exc
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


# --- track, enrich, summarize -----------------------------------------------------------------


def post_upload(
    url: str, task: str, path: Path, body: dict[str, Any], api_key: str | None
) -> dict[str, Any]:
    """POST /api/<task> with the file uploaded (the server keeps it only for the request).
    An error answer or an unreachable server is reported on stderr (exit code 1)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with console.status(f"uploading {path.name} to {url} ({task})"), path.open("rb") as f:
            response = httpx.post(
                f"{url.rstrip('/')}/api/{task}",
                files={"file": (path.name, f)},
                data={"request": json.dumps(body)},
                headers=headers,
                timeout=None,
            )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}[/red]: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    if response.status_code != 200:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        error = response.json().get("error", {}) if is_json else {}
        console.print(
            f"[red]{response.status_code} {error.get('code', '')}[/red]: "
            f"{error.get('message', response.text)}"
        )
        raise typer.Exit(1)
    result: dict[str, Any] = response.json()
    return result


def _local_config(config: Config, path: Path) -> Config:
    """Local runs read any file the user names: its folder is this run's media root."""
    return config.model_copy(update={"media_root": path.parent.resolve()})


async def _track_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_track import TrackRequest, frame_out, start_tracking, track_response
    from zooserve.manager import ModelManager
    from zooserve.pipelines.track import TrackReport
    from zooserve.pipelines.track_sessions import TrackingSessions

    manager = ModelManager(_local_config(config, path))
    request = TrackRequest.model_validate({**body, "video_path": path.name})
    report, collected = TrackReport(), []
    total = request.frame_range.end - request.frame_range.start + 1
    try:
        with Progress(
            TextColumn("track"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("frames", total=total)
            frames = start_tracking(manager, TrackingSessions(manager), request, report)
            async for frame in frames:
                collected.append(frame_out(frame))
                bar.update(task, completed=len(collected))
        return track_response(report, collected).model_dump()
    finally:
        await manager.close()


async def _enrich_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_enrich import EnrichRequest, enrich_response
    from zooserve.manager import ModelManager

    manager = ModelManager(_local_config(config, path))
    try:
        with console.status("enriching (each model loads once)"):
            request = EnrichRequest.model_validate({**body, "video_path": path.name})
            return (await enrich_response(manager, request)).model_dump()
    finally:
        await manager.close()


async def _summarize_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_generate import SummarizeRequest, summarize_response
    from zooserve.engines.pool import EnginePool
    from zooserve.manager import ModelManager

    local = _local_config(config, path)
    manager = ModelManager(local)
    pool = EnginePool(local, manager)
    await pool.start()
    try:
        with console.status("summarizing"):
            request = SummarizeRequest.model_validate({**body, "video_path": path.name})
            return (await summarize_response(pool, request)).model_dump()
    finally:
        await pool.close()
        await manager.close()


LOCAL_RUNNERS = {"track": _track_local, "enrich": _enrich_local, "summarize": _summarize_local}


def run_task(
    task: str,
    config: Config | Callable[[], Config],
    path: Path,
    body: dict[str, Any],
    url: str | None,
    api_key: str | None,
) -> dict[str, Any]:
    """Run `task` on the file here, or on the server at `url` (uploading the file; `config`
    is then never read)."""
    from pydantic import ValidationError

    from zooserve.errors import ZooError

    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file")
    if url:
        return post_upload(url, task, path, body, api_key)
    local = _resolve(config)
    try:
        return asyncio.run(LOCAL_RUNNERS[task](local, path, body))
    except ZooError as exc:
        raise fail(exc) from exc
    except ValidationError as exc:  # the request built from the options (the server's 422)
        console.print(f"[red]422 invalid_input[/red]: {exc}")
        raise typer.Exit(1) from exc


def write_tracks(path: Path, out: Path, result: dict[str, Any]) -> Path:
    """Draw each tracked object's box and id (and mask) on its frame, as an mp4."""
    import numpy as np
    import supervision as sv

    from zooserve.annotate import save_mp4
    from zooserve.media import MediaSource
    from zooserve.rle import decode_mask

    frames = result["frames"]
    with MediaSource.open(path) as media:
        images = media.read([f["frame_number"] for f in frames])
        fps = media.fps or 1.0
    boxes_drawer, labels_drawer = sv.BoxAnnotator(), sv.LabelAnnotator(text_scale=0.5)
    masks_drawer = sv.MaskAnnotator()
    drawn = []
    for image, frame in zip(images, frames, strict=True):
        objects = frame["objects"]
        masks = [decode_mask(o["mask"]) for o in objects if o.get("mask")]
        detections = sv.Detections(
            xyxy=np.asarray(
                [[o["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for o in objects], np.float32
            ).reshape(-1, 4),
            mask=np.stack(masks) if masks and len(masks) == len(objects) else None,
            tracker_id=np.asarray([o["object_id"] for o in objects], int),
            class_id=np.asarray([o["object_id"] for o in objects], int),
        )
        scene = image.image.copy()
        if detections.mask is not None:
            scene = masks_drawer.annotate(scene, detections)
        scene = boxes_drawer.annotate(scene, detections)
        drawn.append(
            labels_drawer.annotate(scene, detections, [f"#{o['object_id']}" for o in objects])
        )
    return save_mp4(drawn, out, fps)


def print_result(task: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    out = Console()
    if task == "summarize":
        out.print(f"[bold]{result['model']}[/bold] via {result['engine']}: {result['summary']}")
        for key in result["key_frames"]:
            out.print(
                f"  frame {key['frame_number']} ({key['timestamp']:.1f} s): {key['description']}"
            )
        return
    if task == "track":
        table = Table(
            "frame", "time s", "objects", title=f"{result['model']} · {result['fps']:.1f} fps"
        )
        for f in result["frames"]:
            ids = ", ".join(
                f"#{o['object_id']}{' (occluded)' if o['occluded'] else ''}" for o in f["objects"]
            )
            table.add_row(str(f["frame_number"]), f"{f['timestamp']:.2f}", ids or "-")
        out.print(table)
        return
    table = Table("frame", "detection", "enrichments", title="enrich")
    for f in result["frames"]:
        if f.get("enrichments"):
            table.add_row(str(f["frame_number"]), "(frame)", ", ".join(sorted(f["enrichments"])))
        for d in f.get("detections", []):
            table.add_row(
                str(f["frame_number"]),
                f"{d['label']} {d['confidence']:.2f}",
                ", ".join(sorted(d.get("enrichments", {}))) or "-",
            )
    out.print(table)
    for error in result.get("errors", []):
        where = f"{error['stage']} ({error['model']})"
        out.print(f"[yellow]{where}: {error['code']}[/yellow] {error['message']}")


# --- ocr --------------------------------------------------------------------------------------


def ocr(
    file: Annotated[Path, typer.Argument(help="video or image")],
    frames: Annotated[str | None, typer.Option(help="frame numbers, e.g. 0,10,20")] = None,
    sample: Annotated[str, typer.Option(help="strategy:count when no --frames")] = "uniform:4",
    trigger: Annotated[str, typer.Option(help="the zoo's whole-frame OCR trigger")] = "text",
    url: Annotated[
        str | None, typer.Option("--url", help="a running zooserve (default: run in this process)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="ZOOSERVE_API_KEY", help="bearer token")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="config YAML (default: $ZOOSERVE_CONFIG or config/models.yaml)"
        ),
    ] = None,
) -> None:
    """Read the text in FILE's frames (OCR; line boxes in frame pixels), here or on --url."""
    body: dict[str, Any] = {"triggers": [trigger]}
    if frames:
        try:
            body["frame_numbers"] = [int(f) for f in frames.split(",") if f.strip()]
        except ValueError as exc:
            raise typer.BadParameter(f"--frames must be integers, got {frames!r}") from exc
    else:
        strategy, _, count = sample.partition(":")
        body["sampling"] = {"strategy": strategy, "count": int(count or 4)}
    result = run_task("enrich", config_loader(config), file, body, url, api_key)
    texts = frame_texts(result, trigger)
    print_texts(texts, as_json)
    if not texts["frames"] and texts["errors"]:
        raise typer.Exit(1)


def frame_texts(result: dict[str, Any], trigger: str) -> dict[str, Any]:
    """An enrich response reduced to each frame's text (frames the trigger did not read are
    left out) and the errors of the run."""
    frames = [
        {
            "frame_number": f["frame_number"],
            "timestamp": f["timestamp"],
            **f["enrichments"][trigger],
        }
        for f in result["frames"]
        if isinstance(f.get("enrichments", {}).get(trigger), dict)
    ]
    return {"trigger": trigger, "frames": frames, "errors": result.get("errors", [])}


def print_texts(texts: dict[str, Any], as_json: bool) -> None:
    for error in texts["errors"]:
        console.print(
            f"[yellow]{error['stage']} ({error['model']}): {error['code']}[/yellow] "
            f"{error['message']}"
        )
    if as_json:
        typer.echo(json.dumps(texts, indent=2))
        return
    table = Table("frame", "text", "score", "box (frame px)", title=f"ocr · {texts['trigger']}")
    for frame in texts["frames"]:
        for line in frame["lines"] or [{"text": "-", "score": None, "box": None}]:
            box = line.get("box")
            table.add_row(
                str(frame["frame_number"]),
                line["text"],
                "" if line["score"] is None else f"{line['score']:.2f}",
                "" if box is None else ", ".join(f"{v:.0f}" for v in box),
            )
    Console().print(table)
