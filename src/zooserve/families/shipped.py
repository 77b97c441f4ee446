"""Weights that ship inside installed packages (facenet-pytorch, rapidocr, brisque): where they
are and how many bytes they take, found without importing the package."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def package_directory(package: str, subdirectory: str) -> Path | None:
    """`<package>/<subdirectory>` of the installed package, or None when it is not installed.

    The package is located, not imported: importing costs time, and some break on import.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / subdirectory


def with_files(directory: Path | None, names: Iterable[str]) -> Path | None:
    """`directory` if it holds every named file, else None."""
    if directory is None:
        return None
    return directory if all((directory / name).is_file() for name in names) else None


def present_file_bytes(source: str, names: Iterable[str]) -> int | None:
    """Bytes of the named files present in the directory `source`, or None when none is."""
    present = [path for path in (Path(source) / name for name in names) if path.is_file()]
    return sum(path.stat().st_size for path in present) if present else None


@dataclass(frozen=True)
class ShippedWeights:
    """Weight files an installed package ships, named in the config by one `model_id`.

    A family that sets `ModelAdapter.shipped` to one of these gets its `builtin_source` (the
    package's directory for that id) and its `estimate_bytes` (those files' bytes, as stored:
    such small nets keep their stored dtype on every device) from it.
    """

    model_id: str
    package: str
    subdirectory: str
    files: tuple[str, ...]

    def source(self, model_id: str) -> str | None:
        """The installed package's directory for `model_id`, or None (another id, or absent)."""
        if model_id != self.model_id:
            return None
        found = with_files(package_directory(self.package, self.subdirectory), self.files)
        return str(found) if found else None

    def file_bytes(self, source: str) -> int | None:
        """Bytes of these files present in the directory `source`, or None when none is."""
        return present_file_bytes(source, self.files)
