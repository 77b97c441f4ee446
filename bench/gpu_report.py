"""The GPU check's report: `gpu_check.json` (every figure, null where one cannot exist) and
`gpu_check.md` beside it, a table per section with the published anchors in their own column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MB = 2**20
#: Published figures to read ours against (other GPUs, real weights, tuned builds).
ANCHORS = {
    "sam2": "SAM 2.1 small: 84.8 fps on A100 (torch.compile); the seed's A100: SAM2.1 50 fps",
    "samurai": "the seed's A100: SAMURAI 45 fps",
    "owlv2": "OWLv2 base: 36 ms/frame on L4 (optimized)",
    "edgetam": "EdgeTAM: 16 fps on iPhone 15 Pro Max (published)",
    "sam3_tracker": "SAM 3: 30 ms per image with 100+ objects on H200 (published)",
}


def _mb(value: Any) -> str:
    return "null" if value is None else f"{value / MB:.1f}"


def _cell(value: Any) -> str:
    return "null" if value is None else str(value)


def _fps(row: dict[str, Any], dtype: str) -> str:
    return _pair((row.get("frames_per_s") or {}).get(dtype))


def _pair(figures: dict[str, Any] | None) -> str:
    return "null" if figures is None else f"{_cell(figures.get('1'))} / {_cell(figures.get('8'))}"


def _video(row: dict[str, Any]) -> str:
    """Propagation frames/s, with the prompt and the most objects a frame held."""
    if row.get("video_fps") is None:
        return "null"
    return f"{row['video_fps']} ({row.get('video_prompt')}, {row.get('video_objects_max')} obj)"


def _compiled(row: dict[str, Any]) -> str:
    """Compiled frames/s b1 / b8 (backend), or why there are none."""
    compiled = row.get("compiled")
    if compiled is None:
        return "n/a"
    reason = compiled.get("skipped") or compiled.get("error")
    if reason:
        return str(reason).replace("|", "/")[:80]
    return f"{_pair(compiled)} ({compiled.get('backend')})"


COLUMNS = (
    "model | size | load s | load ÷ from_pretrained | MB estimate / measured / peak | "
    "torch Δ MB | NVML Δ MB | fps fp32 b1 / b8 | fps half b1 / b8 | fps compiled b1 / b8 | "
    "video fps (prompt, objects) | "
    "unload recovered | wake s | wake ÷ load | published anchor | error"
)


def family_line(name: str, row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"| {name} | skipped: {row['skipped']} |"
    moved = row.get("device_delta") or {}
    cells = [
        name,
        row.get("size", "shipped"),
        _cell(row.get("load_s")),
        _cell(row.get("load_ratio_from_pretrained")),
        " / ".join(_mb(row.get(k)) for k in ("bytes_estimate", "bytes_measured", "peak_bytes")),
        _mb(moved.get("torch_allocated")),
        _mb(moved.get("nvml")),
        _fps(row, "fp32"),
        _fps(row, "half"),
        _compiled(row),
        _video(row),
        _cell(row.get("unload_recovered_fraction")),
        _cell(row.get("tier_wake_s")),
        _cell(row.get("tier_wake_ratio")),
        ANCHORS.get(name, ""),
        (row.get("error") or "").replace("|", "/")[:160],
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    device = report.get("device") or {}
    lines = [
        f"# GPU check ({report['settings']['mode']} run)",
        "",
        f"Device: {device.get('name')} ({device.get('device')}), torch {device.get('torch')}, "
        f"CUDA {device.get('cuda')}; {report.get('elapsed_s')} s"
        + (" — stopped at the time limit" if report.get("timed_out") else ""),
        "",
        "## Device checks",
        "",
        "```json",
        json.dumps(report.get("device_checks"), indent=1, default=str),
        "```",
        "",
        "## Families",
        "",
        f"| {COLUMNS} |",
        "|" + " --- |" * len(COLUMNS.split(" | ")),
    ]
    lines += [family_line(name, row) for name, row in report["families"].items()]
    churn = report.get("churn") or {}
    lines += ["", "## Churn", ""]
    lines += [f"- {key}: {_cell(value)}" for key, value in churn.items()] or ["- not run"]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
