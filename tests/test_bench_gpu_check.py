"""bench/gpu_check.py --dry-run on two families: the same code the GPU runs, on the CPU with
tiny configs, through the real manager and a real server (no timing assertions); the video
phase of the trackers added since (EdgeTAM, SAM 3) on their tiny builds, and their base
configs on the meta device."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from transformers import AutoConfig

from tests.bench_scripts import load_bench
from tests.conftest import TinyModels
from zooserve.catalog import Config
from zooserve.manager import ModelManager

gpu_check = load_bench("gpu_check")


def test_the_dry_run_writes_every_section_with_nulls_where_the_cpu_has_no_figure(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    gpu_check.main(
        ["--dry-run", "--out", str(out), "--families", "segformer", "osnet", "--requests", "12"]
    )
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["device"]["device"] == "cpu" and not report.get("timed_out")

    families = report["families"]
    assert set(families) == {"segformer", "osnet"}
    for name, row in families.items():
        assert "error" not in row, (name, row.get("error"), row.get("trace"))
        assert row["load_s"] > 0 and row["bytes_measured"] > 0
        assert row["unload_recovered_fraction"] == 1.0 and row["unload_verified"] is True
        assert row["frames_per_s"]["fp32"]["1"] > 0 and row["frames_per_s"]["fp32"]["8"] > 0
        # figures that cannot exist on the CPU are null, not zero
        assert row["frames_per_s"]["half"] is None and row["tier_wake_s"] is None
        assert row["device_delta"] == {
            "torch_allocated": None,
            "torch_reserved": None,
            "nvml": None,
        }
    assert (
        families["segformer"]["size"] == "tiny"
        and families["segformer"]["load_ratio_from_pretrained"] > 0
    )
    compiled = families["segformer"]["compiled"]  # dynamo alone on the CPU: the code path
    assert compiled["backend"] == "eager" and compiled["1"] > 0 and compiled["8"] > 0
    assert "compiled" not in families["osnet"]  # ONNX Runtime: nothing for torch to compile

    checks = report["device_checks"]
    assert checks["memory_at_start"]["ledger"]["budget"] > 0
    outside = checks["memory_at_start"]["outside_ledger"]
    assert outside == {"cuda_context_bytes": 0, "cached_free_bytes": 0}  # no CUDA context
    assert checks["ort_providers"]["sessions"]["osnet"][0][0] == "CPUExecutionProvider"
    assert checks["verification"]["unload"]["verified"] is True

    churn = report["churn"]
    assert churn["requests"] == 12 and churn["statuses"] == {"200": 12}
    assert churn["loads"] >= 2 and churn["budget_mb"] > 0  # both served, under a budget
    assert churn["never_over_budget"] is None  # NVML has nothing to sample on the CPU

    table = (out / "gpu_check.md").read_text()
    assert "| segformer | tiny |" in table and "| osnet | shipped |" in table
    assert "(eager) |" in table  # the compiled column


gpu_families, gpu_report = load_bench("gpu_families"), load_bench("gpu_report")


@pytest.mark.parametrize(
    ("tiny", "family", "prompt"),
    [("edgetam", "edgetam", "box"), ("sam3_video", "sam3_tracker", "text")],
)
def test_the_video_phase_propagates_edgetam_and_sam3(
    tiny_models: TinyModels, tiny: str, family: str, prompt: str
) -> None:
    """SAM 3 tracks concepts (text prompts; a box would be a 422), EdgeTAM a box: both are
    driven through the real manager on a 1280x720 clip and get their published anchor."""
    entry = {"model_id": str(tiny_models.path(tiny)), "family": family, "category": "tracking"}
    config = Config.model_validate({"device": "cpu", "models": {family: entry}})

    async def propagate() -> dict[str, Any]:
        manager = ModelManager(config)
        try:
            return dict(await gpu_families.video_fps(manager, family, 3))
        finally:
            await manager.close()

    row = asyncio.run(propagate())
    assert row["video_fps"] > 0 and row["video_prompt"] == prompt
    assert row["video_objects_max"] >= 1  # something was tracked, not only detected
    line = gpu_report.family_line(family, {"family": family, "size": "tiny", **row})
    assert f"({prompt}, {row['video_objects_max']} obj)" in line and "(published)" in line


def test_the_full_run_builds_edgetam_and_sam3_at_their_released_sizes(
    tiny_models: TinyModels,
) -> None:
    """The base configs come from transformers' config classes offline (the GPU machine has
    no hub either); built on the meta device, so no weights are made."""
    configs = load_bench("tracker_configs")
    tiny = AutoConfig.from_pretrained(tiny_models.path("sam3_video"), local_files_only=True)
    with torch.device("meta"):
        edgetam = transformers.EdgeTamVideoModel(configs.edgetam_base(None))
        sam3 = transformers.Sam3VideoModel(configs.sam3_base(tiny))
    assert 13e6 < sum(p.numel() for p in edgetam.parameters()) < 15e6  # released: 13.9M
    assert 8.5e8 < sum(p.numel() for p in sam3.parameters()) < 8.7e8  # released: ~860M
    assert sam3.config.score_threshold_detection == tiny.score_threshold_detection
