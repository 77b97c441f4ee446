"""`zooserve detect|track|enrich|summarize FILE ...`: run a task on a local file, in this
process or against a running server (`--url`, uploading the file).

With `--url` nothing local is needed but the file: no config is read (a task takes the config
or a loader, called only for a local run).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from zooserve.cli.common import (
    ConfigOption,
    FramesOption,
    JsonOption,
    KeyOption,
    UrlOption,
    config_loader,
    console,
    errors,
    fail,
    frame_selection,
    parse_numbers,
    quiet_logging,
    split_list,
)
from zooserve.cli.render import print_result

if TYPE_CHECKING:
    from zooserve.catalog import Config

ModelOption = Annotated[str | None, typer.Option("--model", "-m")]
ThresholdOption = Annotated[float, typer.Option(min=0.0, max=1.0)]
FileArgument = Annotated[Path, typer.Argument(help="video or image")]


def post_upload(
    url: str, task: str, path: Path, body: dict[str, Any], api_key: str | None
) -> dict[str, Any]:
    """POST /api/<task> with the file uploaded (the server keeps it only for the request).
    An error answer or an unreachable server is reported on stderr (exit code 1)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with errors.status(f"uploading {path.name} to {url} ({task})"), path.open("rb") as f:
            response = httpx.post(
                f"{url.rstrip('/')}/api/{task}",
                files={"file": (path.name, f)},
                data={"request": json.dumps(body)},
                headers=headers,
                timeout=None,
            )
    except httpx.HTTPError as exc:
        errors.print(f"[red]cannot reach {url}[/red]: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    if response.status_code != 200:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        error = response.json().get("error", {}) if is_json else {}
        errors.print(
            f"[red]{response.status_code} {error.get('code', '')}[/red]: "
            f"{error.get('message', response.text)}"
        )
        raise typer.Exit(1)
    result: dict[str, Any] = response.json()
    return result


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

    from zooserve.cli.local import RUNNERS
    from zooserve.core.errors import ZooError

    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file")
    if url:
        return post_upload(url, task, path, body, api_key)
    local = config() if callable(config) else config
    try:
        return asyncio.run(RUNNERS[task](local, path, body))
    except ZooError as exc:
        raise fail(exc) from exc
    except ValidationError as exc:  # the request built from the options (the server's 422)
        errors.print(f"[red]422 invalid_input[/red]: {exc}")
        raise typer.Exit(1) from exc


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
    from zooserve.cli.annotated import write_annotated
    from zooserve.core.errors import ZooError
    from zooserve.media import MediaSource

    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file")
    try:
        with MediaSource.open(path) as media:
            if frames:
                numbers = parse_numbers(frames)
            else:
                strategy, _, count = (sample or "uniform:8").partition(":")
                numbers = media.sample(strategy, int(count or 8))
    except ZooError as exc:
        raise fail(exc) from exc
    body: dict[str, Any] = {"frame_numbers": numbers, "confidence_threshold": threshold}
    if model:
        body["model"] = model
    if prompts:
        body["prompts"] = split_list(prompts)
    result = run_task("detect", config, path, body, url, api_key)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        table = Table("frame", "time s", "detections", title=f"{path.name} · {result['model']}")
        for f in result["frames"]:
            found = ", ".join(f"{d['label']} {d['confidence']:.2f}" for d in f["detections"])
            table.add_row(str(f["frame_number"]), f"{f['timestamp']:.2f}", found or "-")
        console.print(table)
    if annotate_to:
        written = write_annotated(path, annotate_to, result)
        errors.print("annotated: " + ", ".join(str(p) for p in written))


def detect(
    file: FileArgument,
    frames: FramesOption = None,
    sample: Annotated[
        str | None, typer.Option(help="strategy:count, e.g. uniform:8, scene_change:5")
    ] = None,
    model: ModelOption = None,
    prompts: Annotated[str | None, typer.Option(help="comma-separated text queries")] = None,
    threshold: ThresholdOption = 0.3,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    annotate: Annotated[
        Path | None, typer.Option(help="write annotated frames: OUT.png or OUT.mp4")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Detect objects in FILE (locally, or on the server given by --url)."""
    quiet_logging()
    run_detect(
        config_loader(config),
        file,
        frames,
        sample,
        model,
        prompts,
        threshold,
        url,
        api_key,
        as_json,
        annotate,
    )


def _box_prompts(boxes: list[str]) -> list[dict[str, Any]]:
    prompts = []
    for item in boxes:
        try:
            ident, coords = item.split(":")
            prompts.append({"object_id": int(ident), "box": [float(v) for v in coords.split(",")]})
        except ValueError as exc:
            raise typer.BadParameter(f"--box expects ID:x1,y1,x2,y2, got {item!r}") from exc
    return prompts


def track(
    file: Annotated[Path, typer.Argument(help="video")],
    start: Annotated[int, typer.Option(help="first frame")] = 0,
    end: Annotated[int | None, typer.Option(help="last frame (inclusive; default: +49)")] = None,
    prompts: Annotated[
        str | None, typer.Option(help="texts to track, e.g. person,car (the detector finds them)")
    ] = None,
    box: Annotated[
        list[str] | None, typer.Option(help="ID:x1,y1,x2,y2 at the first frame (repeatable)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="tracking model")] = None,
    threshold: ThresholdOption = 0.3,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    annotate: Annotated[Path | None, typer.Option(help="write OUT.mp4 with boxes and ids")] = None,
    config: ConfigOption = None,
) -> None:
    """Track objects through FILE (locally, or on the server given by --url)."""
    from zooserve.cli.annotated import write_tracks

    quiet_logging()
    object_prompts: list[Any] = [*split_list(prompts), *_box_prompts(box or [])]
    body: dict[str, Any] = {
        "frame_range": {"start": start, "end": start + 49 if end is None else end},
        "confidence_threshold": threshold,
        "prompts": object_prompts or ["person"],
    }
    if model:
        body["tracking_model"] = model
    result = run_task("track", config_loader(config), file, body, url, api_key)
    print_result("track", result, as_json)
    if annotate:
        errors.print(f"annotated: {write_tracks(file, annotate, result)}")


def enrich(
    file: FileArgument,
    frames: FramesOption = None,
    sample: Annotated[str, typer.Option(help="strategy:count when no --frames")] = "uniform:4",
    triggers: Annotated[str | None, typer.Option(help="comma-separated trigger names")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="primary detector")] = None,
    prompts: Annotated[str | None, typer.Option(help="detector text queries")] = None,
    threshold: ThresholdOption = 0.3,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Enrich detections in FILE with the zoo (each needed model loads once).

    A row per frame and detection shows each stage's value (text read, scores, faces, plates).
    """
    quiet_logging()
    body: dict[str, Any] = {"confidence_threshold": threshold, **frame_selection(frames, sample)}
    for key, value in (("triggers", triggers), ("prompts", prompts)):
        if value:
            body[key] = split_list(value)
    if model:
        body["model"] = model
    result = run_task("enrich", config_loader(config), file, body, url, api_key)
    print_result("enrich", result, as_json)


def summarize(
    file: FileArgument,
    persona: Annotated[str, typer.Option(help="who the summary is for")],
    frame_count: Annotated[int, typer.Option(min=1)] = 8,
    sampling: Annotated[str, typer.Option(help="uniform | interval | keyframes | scene_change")] = (
        "uniform"
    ),
    model: ModelOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Summarize FILE for a persona with a vision-language model (through the engines)."""
    quiet_logging()
    body: dict[str, Any] = {
        "persona_context": persona,
        "frame_count": frame_count,
        "sampling_strategy": sampling,
    }
    if model:
        body["model"] = model
    result = run_task("summarize", config_loader(config), file, body, url, api_key)
    print_result("summarize", result, as_json)
