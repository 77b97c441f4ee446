"""ultralytics is AGPL-3.0, an optional extra: without it the YOLO families fail to load with
an install hint (HTTP 501), and no module of theirs imports it before a load. These run without
ultralytics installed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.families.adapters import make_adapter
from zooserve.core.errors import MissingDependency
from zooserve.families.base import ModelAdapter
from zooserve.families.ultralytics import yolo, yolo_world
from zooserve.runtimes import ultralytics_runtime

#: family -> (adapter class, its install hint, a checkpoint name)
FAMILIES: dict[str, tuple[type[ModelAdapter], str, str]] = {
    "yolo": (yolo.YoloDetector, yolo.INSTALL_HINT, "yolo11n.pt"),
    "yolo_world": (yolo_world.YoloWorldDetector, yolo_world.INSTALL_HINT, "yolov8s-worldv2.pt"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_ultralytics_raises_install_hint(
    family: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cls, hint, checkpoint = FAMILIES[family]
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # `import ultralytics` now fails
    with pytest.raises(MissingDependency) as info:
        make_adapter(cls, tmp_path / checkpoint, framework="ultralytics").load()
    assert info.value.status == 501 and info.value.message == hint
    assert "pip install 'zooserve[ultralytics]'" in hint and "AGPL-3.0" in hint


MODULES = [yolo, yolo_world, ultralytics_runtime]


def top_level_imports(module: ModuleType) -> list[str]:
    """The modules a file imports at its top level: what importing it imports."""
    names: list[str] = []
    for node in ast.parse(Path(module.__file__ or "").read_text()).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_no_module_imports_ultralytics_at_import_time(module: ModuleType) -> None:
    imported = top_level_imports(module)
    assert imported, "no imports found: the check would be vacuous"
    assert not [name for name in imported if name.split(".")[0] == "ultralytics"]
