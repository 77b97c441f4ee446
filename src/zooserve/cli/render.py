"""What the task commands show: tables whose cells carry the values found (text read, scores,
faces, plates), and annotated pictures and videos written from an answer."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from zooserve.cli.common import console, errors

#: Values longer than this are cut in a table cell (`--json` has them whole).
CELL_CHARS = 120


def number(value: float) -> str:
    """Two significant decimals for scores in [0, 1], one for larger figures."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def is_detection(value: Any) -> bool:
    return isinstance(value, dict) and {"label", "confidence", "bbox"} <= value.keys()


def describe(value: Any) -> str:
    """One enrichment value in a line a person can read: `"EXIT 42" 0.93`, `sunny 0.81`,
    `42.3 flags: blurry`, `face 0.98 (age 20-29 0.41; gender female 0.90)`."""
    if value is None:
        return "-"
    if isinstance(value, list):
        if not value:
            return "none"
        if all(is_detection(v) for v in value):
            return "; ".join(_detection(v) for v in value)
        return ", ".join(describe(v) for v in value)
    if isinstance(value, dict):
        return _mapping(value)
    if isinstance(value, float):
        return number(value)
    return str(value)


def _detection(found: dict[str, Any]) -> str:
    text = f"{found['label']} {number(found['confidence'])}"
    inner = found.get("enrichments") or {}
    if inner:
        text += " (" + ", ".join(f"{k} {describe(v)}" for k, v in sorted(inner.items())) + ")"
    return text


def _mapping(value: dict[str, Any]) -> str:
    """The fields a kind's value is read by (enrich_kinds.py), in a fixed order."""
    if value.get("text") == "":
        return "no text"
    parts: list[str] = []
    if "text" in value:
        parts.append(json.dumps(value["text"]))
    if value.get("label") is not None:
        parts.append(str(value["label"]))
    if value.get("dominant") is not None:
        parts.append(str(value["dominant"]))
    if value.get("posture") is not None:
        parts.append(str(value["posture"]))
    if "keypoints" in value:
        parts.append(f"{len(value['keypoints'])} keypoints")
    if "score" in value:
        parts.append(number(float(value["score"])))
    if "relative_distance" in value:
        parts.append(f"distance {number(value['relative_distance'])}")
    if "median" in value:
        parts.append(f"depth median {number(value['median'])}")
    if "dim" in value:
        parts.append(f"{value['dim']}-d vector")
    flagged = [k for k, v in (value.get("flags") or {}).items() if v]
    flagged += [k for k, v in (value.get("flagged_fraction") or {}).items() if v]
    if flagged:
        parts.append("flags: " + ", ".join(sorted(set(flagged))))
    if not parts:
        parts.append(json.dumps(value, default=str))
    return " ".join(parts)


def _cell(enrichments: dict[str, Any]) -> str:
    lines = []
    for name, value in sorted(enrichments.items()):
        text = describe(value)
        if len(text) > CELL_CHARS:
            text = text[: CELL_CHARS - 1] + "…"
        lines.append(f"[bold]{escape(name)}[/bold]: {escape(text)}")
    return "\n".join(lines) or "-"


def print_result(task: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    if task == "summarize":
        console.print(f"[bold]{result['model']}[/bold] via {result['engine']}: {result['summary']}")
        for key in result["key_frames"]:
            console.print(
                f"  frame {key['frame_number']} ({key['timestamp']:.1f} s): {key['description']}"
            )
        return
    if task == "track":
        title = f"{result['model']} · {result['fps']:.1f} fps"
        table = Table("frame", "time s", "objects", title=title)
        for f in result["frames"]:
            ids = ", ".join(
                f"#{o['object_id']}{' (occluded)' if o['occluded'] else ''}" for o in f["objects"]
            )
            table.add_row(str(f["frame_number"]), f"{f['timestamp']:.2f}", ids or "-")
        console.print(table)
        return
    print_enrichment(result)


def print_enrichment(result: dict[str, Any]) -> None:
    """A row per frame and per detection with each stage's value; then batch, clip, errors."""
    table = Table("frame", "detection", "enrichments", title="enrich", show_lines=True)
    for f in result["frames"]:
        if f.get("enrichments"):
            table.add_row(str(f["frame_number"]), "(frame)", _cell(f["enrichments"]))
        for d in f.get("detections", []):
            found = f"{escape(d['label'])} {d['confidence']:.2f}"
            table.add_row(str(f["frame_number"]), found, _cell(d.get("enrichments", {})))
    for scope in ("batch", "clip"):
        if result.get(scope):
            table.add_row("all", f"({scope})", _cell(result[scope]))
    console.print(table)
    print_stage_errors(result.get("errors", []))


def print_stage_errors(stage_errors: list[dict[str, Any]]) -> None:
    """Each stage that failed or was skipped, on stderr."""
    for error in stage_errors:
        where = escape(f"{error['stage']} ({error['model']}): {error['code']}")
        errors.print(f"[yellow]{where}[/yellow] {escape(error['message'])}")
