"""Is a downloaded file usable weights? Caught here: empty files, Git LFS pointers and HTML
pages saved in place of weights, unparsable safetensors/ONNX/JSON/checkpoint headers, and a
sha256 that differs from the config's."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf", ".ckpt")


def verify_file(path: Path, sha256: str | None = None) -> str | None:
    """Why the downloaded file is not usable, or None: empty, LFS pointer or HTML page instead
    of weights, unparsable safetensors/ONNX/JSON/checkpoint header, or a sha256 mismatch."""
    if not path.is_file():
        return "missing after download"
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself"
    name = path.name.lower()
    if name.endswith(WEIGHT_SUFFIXES) and head.lstrip().lower().startswith(
        (b"<!doctype", b"<html")
    ):
        return "an HTML page, not weights"
    problem = _check_format(path, name, size)
    if problem:
        return problem
    if sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha256.lower():
            return f"sha256 {digest.hexdigest()} is not the expected {sha256}"
    return None


def _check_format(path: Path, name: str, size: int) -> str | None:
    if name.endswith(".safetensors"):
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if length <= 0 or 8 + length > size:
                return "safetensors header length is out of range (truncated file?)"
            try:
                header = json.loads(fh.read(length))
            except ValueError:
                return "safetensors header is not JSON"
        return None if isinstance(header, dict) else "safetensors header is not a JSON object"
    if name.endswith(".onnx"):
        return _check_onnx(path)
    if name.endswith((".pt", ".pth", ".bin", ".ckpt")):
        with open(path, "rb") as fh:
            first = fh.read(1)
        if zipfile.is_zipfile(path) or first == b"\x80":  # torch zip, or a legacy pickle
            return None
        return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"
    if name.endswith(".json"):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return "not valid JSON"
    return None


def _check_onnx(path: Path) -> str | None:
    try:
        import onnx
    except ImportError:  # ModelProto starts with field 1 (ir_version, varint): tag byte 0x08
        with open(path, "rb") as fh:
            return None if fh.read(1) == b"\x08" else "not an ONNX model"
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError
        return f"ONNX does not parse: {exc}"
    return None if model.graph.node else "ONNX model has an empty graph"
