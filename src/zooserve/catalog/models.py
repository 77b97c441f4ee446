"""One entry under `models:` (ModelSpec), where `zooserve models pull` fetches its weights
(ModelSource), and the id and duration rules both follow.

A source must land where the model's loader looks for it; check_source says so per entry once
the whole config is known (a variant names another entry).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from zooserve.catalog.strict import StrictModel

if TYPE_CHECKING:
    from collections.abc import Mapping

Framework = Literal["pytorch", "onnx", "opencv", "ultralytics", "sglang", "vllm", "transformers"]
#: `scheme:name` ids for weights shipped inside packages (opencv:, rapidocr:, builtin:, ...).
_BUILTIN_ID = re.compile(r"^[a-z][a-z0-9_-]+:(?!//)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def is_builtin_id(model_id: str) -> bool:
    """`scheme:name`: weights that ship inside a package (nothing to download)."""
    return bool(_BUILTIN_ID.match(model_id))


def is_hub_id(model_id: str) -> bool:
    """`org/name`: a model hub repository."""
    return bool(_HUB_ID.match(model_id))


def parse_keep_alive(value: str | float | int | None) -> float | None:
    """Seconds to keep an idle model; -1 (or any negative) pins it; None means the default."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 30s, 5m, 1h or -1, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


#: Options of any model the manager reads, and their least value: concurrent forwards per model
#: (its lane), frames per batch across requests, and how long a batch may wait to fill.
SERVING_OPTIONS = {"concurrency": 1, "max_batch_size": 1, "batch_size": 1, "max_batch_wait_ms": 0}


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelSource(StrictModel):
    """Where `zooserve models pull` fetches a model's weights: exactly one of `repo` (a hub repo
    and the files to take), `ultralytics` (an asset name) or `none` (why there is no public
    source). Models whose id names a package (`opencv:`, `rapidocr:`, ...) need none."""

    repo: str | None = None
    #: Files to take from `repo`: paths, globs (`*.json`; matching none is fine) or
    #: alternatives `model.safetensors|pytorch_model.bin` (the first the repo has).
    files: list[str] = Field(default_factory=list)
    revision: str | None = None
    #: An Ultralytics release asset (e.g. yolo26n.pt), from github.com/ultralytics/assets.
    ultralytics: str | None = None
    release: str = "v8.4.0"
    #: file name -> expected sha256 (hex), checked after the download.
    sha256: dict[str, str] = Field(default_factory=dict)
    none: str | None = None
    #: Licence or caveat shown by `zooserve models pull` (gated, non-commercial, AGPL, ...).
    note: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSource:
        kinds = [k for k in ("repo", "ultralytics", "none") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of repo (with files), ultralytics or none (a reason)"
            )
        if self.repo is not None:
            if not _HUB_ID.match(self.repo):
                raise ValueError(f"repo must be a hub id like org/name, got {self.repo!r}")
            if not self.files:
                raise ValueError("a repo source lists the files to take (paths or globs)")
        elif self.files:
            raise ValueError("files belongs to a repo source")
        bad = [name for name, digest in self.sha256.items() if not _SHA256.match(digest)]
        if bad:
            raise ValueError(f"sha256 values must be 64 lowercase hex digits: {bad}")
        return self

    @property
    def kind(self) -> Literal["repo", "ultralytics", "none"]:
        return "repo" if self.repo else "ultralytics" if self.ultralytics else "none"


class ModelSpec(StrictModel):
    """One entry under `models:`. `name` is its key there."""

    name: str = ""
    model_id: str
    family: str | None = None
    framework: Framework = "pytorch"
    category: str = "detection"
    vram_mb: float | None = Field(default=None, ge=0)
    enabled: bool = True
    quantization: Literal["8bit", "4bit"] | None = None
    keep_alive: str | float | None = None
    description: str = ""
    #: Family-specific settings (e.g. which OpenCV cascade, default prompts).
    options: dict[str, Any] = Field(default_factory=dict)
    #: Where `zooserve models pull` fetches the weights. None: a package ships them, or a hub
    #: model_id takes its configs and safetensors (zooserve.cli.pull.DEFAULT_FILES).
    source: ModelSource | None = None
    #: This entry is a pre-quantized (4-bit, FP8, AWQ) build of that model.
    variant_of: str | None = None

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: str | float | None) -> str | float | None:
        parse_keep_alive(value)
        return value

    @field_validator("options")
    @classmethod
    def _check_serving_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options the manager reads for every family (lanes, batching)."""
        for key, least in SERVING_OPTIONS.items():
            value = options.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < least:
                raise ValueError(f"options.{key} must be a number >= {least}, got {value!r}")
            if key != "max_batch_wait_ms" and value != int(value):
                raise ValueError(f"options.{key} must be a whole number, got {value!r}")
        return options

    @property
    def keep_alive_seconds(self) -> float | None:
        return parse_keep_alive(self.keep_alive)

    @property
    def pinned(self) -> bool:
        seconds = self.keep_alive_seconds
        return seconds is not None and seconds < 0


def check_source(models: Mapping[str, ModelSpec], name: str, spec: ModelSpec) -> None:
    """A source must land where the model's loader looks for it (its model_id)."""
    if spec.variant_of is not None and spec.variant_of not in models:
        raise ValueError(f"models.{name}.variant_of names {spec.variant_of!r}, not under models:")
    source = spec.source
    if source is None or source.kind == "none":
        return
    model_id = spec.model_id
    if _BUILTIN_ID.match(model_id):
        raise ValueError(f"models.{name}.source: {model_id!r} ships in a package; remove source")
    local = "{MODEL_ZOO_PATH}" in model_id or not _HUB_ID.match(model_id)
    if source.kind == "ultralytics" and not local:
        raise ValueError(
            f"models.{name}.source: an ultralytics asset needs a local model_id "
            f"(e.g. {{MODEL_ZOO_PATH}}/{source.ultralytics})"
        )
    if source.kind == "repo" and not local and source.repo != model_id:
        raise ValueError(
            f"models.{name}.source.repo is {source.repo!r} but model_id is {model_id!r}: "
            "hub models are found in the cache by model_id, so they must be the same"
        )
