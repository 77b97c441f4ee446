"""`zooserve ocr FILE`: the text in a file's frames, read by the zoo's whole-frame OCR trigger
(an enrich run reduced to its text), as a table, JSON, or a picture with the lines boxed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    frame_selection,
)
from zooserve.cli.render import print_stage_errors
from zooserve.cli.tasks import run_task


def ocr(
    file: Annotated[Path, typer.Argument(help="video or image")],
    frames: FramesOption = None,
    sample: Annotated[str, typer.Option(help="strategy:count when no --frames")] = "uniform:4",
    trigger: Annotated[str, typer.Option(help="the zoo's whole-frame OCR trigger")] = "text",
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    annotate: Annotated[
        Path | None,
        typer.Option(help="write the frames with each line boxed: OUT.png (or OUT.mp4)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Read the text in FILE's frames (OCR; line boxes in frame pixels), here or on --url."""
    from zooserve.cli.annotated import write_text_boxes

    body: dict[str, Any] = {"triggers": [trigger], **frame_selection(frames, sample)}
    result = run_task("enrich", config_loader(config), file, body, url, api_key)
    texts = frame_texts(result, trigger)
    print_texts(texts, as_json)
    if not texts["frames"] and texts["errors"]:
        raise typer.Exit(1)
    if annotate and texts["frames"]:
        written = write_text_boxes(file, annotate, texts["frames"])
        errors.print("annotated: " + ", ".join(str(p) for p in written))


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
    print_stage_errors(texts["errors"])
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
    console.print(table)
