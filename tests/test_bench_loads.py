"""bench/loads.py: load vs from_pretrained on one tiny model (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_scripts import load_bench

loads = load_bench("loads")


def test_a_tiny_segformer_reports_both_loads_side_by_side(tmp_path: Path) -> None:
    report = loads.bench(tmp_path, ["segformer"], repeats=1, real_size=False)
    row = report["families"]["segformer"]
    assert {"weights_mb", "load_s", "from_pretrained_s", "ratio", "build_s"} <= row.keys()
    assert row["load_s"] > 0 and row["from_pretrained_s"] > 0 and row["ratio"] > 0
    assert 0 < row["weights_mb"] < 1  # the tiny test build, not the released size
    assert "| segformer | tiny test build |" in loads.table(report)


def test_every_family_names_a_zooserve_family_and_a_transformers_class() -> None:
    from zooserve.families import FAMILIES

    for name, family in loads.FAMILIES.items():
        assert loads.ZOOSERVE_FAMILY.get(name, name) in FAMILIES
        assert hasattr(loads.transformers, family.model_class)
