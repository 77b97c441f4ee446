"""bench/gpu_check.py --dry-run on two families: the same code the GPU runs, on the CPU with
tiny configs, through the real manager and a real server (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_scripts import load_bench

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
