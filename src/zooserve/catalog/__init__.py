"""The config file: schema, validation with key-path messages, env overrides, model sources.

Everything outside tools rely on lives here (DESIGN.md "Configuration"). Unknown keys are errors.
Where a configured model's weights are on this machine is zooserve.families.sources: it needs
the model
adapters, which import this module, so this module imports no adapter code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zooserve.catalog.engines import EngineSpec
from zooserve.catalog.location import locate_config
from zooserve.catalog.zoo import TriggerSpec, check_trigger_graph, check_trigger_models
from zooserve.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/models.yaml")
TaskName = Literal[
    "object_detection", "video_tracking", "video_summarization", "ontology_augmentation"
]
Framework = Literal["pytorch", "onnx", "opencv", "ultralytics", "sglang", "vllm", "transformers"]
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelSource(_Strict):
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


class ModelSpec(_Strict):
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


class TaskSpec(_Strict):
    selected: str
    options: list[str]

    @model_validator(mode="after")
    def _selected_among_options(self) -> TaskSpec:
        if self.selected not in self.options:
            raise ValueError(f"selected {self.selected!r} is not among options {self.options}")
        return self


class ZooSection(_Strict):
    """Declarative enrichment rules (used by the zoo pipeline); see zooserve.catalog.zoo."""

    triggers: list[TriggerSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_graph(self) -> ZooSection:
        check_trigger_graph(self.triggers)
        return self


class Config(_Strict):
    device: str = "auto"
    memory_budget_mb: float | Literal["auto"] = "auto"
    media_root: Path = Path("./media")
    model_zoo_path: Path = Path("./models")
    default_keep_alive: str | float = "5m"
    #: Seconds a request waits for busy models to free room before a 503.
    admission_timeout_s: float = Field(default=30.0, ge=0)
    #: Requests that may wait for memory at once; past it, 429 with Retry-After.
    max_pending: int = Field(default=64, ge=1)
    #: Swap-aware ordering: a request for a model that is not loaded waits up to this long
    #: while the loaded models it would evict are still being used (0: arrival order).
    max_wait_s: float = Field(default=1.0, ge=0)
    #: Pinned host memory where evicted models park and wake by a copy (CUDA); "auto": a
    #: quarter of the RAM on CUDA (at most 32 GiB), 0 on the CPU; 0 turns parking off.
    host_memory_budget_mb: float | Literal["auto"] = "auto"
    #: Text queries for open-vocabulary detectors when a request gives none.
    default_prompts: list[str] = Field(
        default_factory=lambda: ["person", "car", "bicycle", "dog", "cat"]
    )
    max_frames_per_request: int = Field(default=256, ge=1)
    #: Largest upload (multipart, streamed to disk), MB; bigger bodies get a 413.
    max_request_mb: float = Field(default=512, gt=0)
    #: Largest JSON (any non-upload) body, MB: parsed whole in memory; 413 before reading.
    max_json_mb: float = Field(default=4, gt=0, le=64)
    #: Origins allowed by CORS and to post from a browser (none by default: only this server's).
    cors_origins: list[str] = Field(default_factory=list)
    #: One JSON object per log line instead of text.
    log_json: bool = False
    #: SQLite file that keeps async jobs across restarts.
    jobs_db: Path = Path("./state/jobs.sqlite3")
    #: Jobs waiting beyond this many get a 429.
    max_queued_jobs: int = Field(default=32, ge=1)
    job_workers: int = Field(default=1, ge=1)
    #: Finished jobs kept (newest first); older ones are pruned from memory and the database.
    jobs_keep: int = Field(default=200, ge=1)
    #: Finished jobs older than this many seconds are pruned.
    jobs_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    #: Largest frame a request may decode (width x height, pixels); checked before decoding.
    max_frame_pixels: int = Field(default=4096 * 4096, ge=1)
    #: Decoded frames one request may hold at once (MB of RGB pixels), checked before decoding.
    max_decoded_mb: float = Field(default=1024, gt=0)
    #: Frames a non-streamed track request (or a track job) may cover; streams are unbounded.
    max_track_frames: int = Field(default=1800, ge=1)
    #: Seconds one inference call may run before its lane is replaced and the caller gets a 503.
    inference_timeout_s: float = Field(default=120.0, gt=0)
    #: Deepest nesting of a JSON request body.
    max_json_depth: int = Field(default=32, ge=2)
    tasks: dict[TaskName, TaskSpec] = Field(default_factory=dict)
    models: dict[str, ModelSpec]
    zoo: ZooSection = Field(default_factory=ZooSection)
    engines: list[EngineSpec] = Field(default_factory=list)
    #: Directory of the config file; relative paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("default_keep_alive")
    @classmethod
    def _check_default_keep_alive(cls, value: str | float) -> str | float:
        parse_keep_alive(value)
        return value

    @model_validator(mode="after")
    def _link_names(self) -> Config:
        for name, model in self.models.items():
            model.name = name
        for task, spec in self.tasks.items():
            for option in spec.options:
                if option not in self.models:
                    raise ValueError(
                        f"tasks.{task}.options names {option!r}, which is not under models: "
                        f"(known: {sorted(self.models)})"
                    )
        for name, model in self.models.items():
            _check_source(self, name, model)
        check_trigger_models(self.zoo.triggers, self.models)
        return self

    def resolve_path(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def media_dir(self) -> Path:
        return self.resolve_path(self.media_root)

    def keep_alive_for(self, spec: ModelSpec) -> float:
        seconds = spec.keep_alive_seconds
        if seconds is None:
            seconds = parse_keep_alive(self.default_keep_alive)
        return float(seconds if seconds is not None else 300.0)

    def expand_model_id(self, spec: ModelSpec) -> str:
        """Expand `{MODEL_ZOO_PATH}`; relative local paths resolve against the config's dir."""
        zoo = str(self.resolve_path(self.model_zoo_path))
        model_id = spec.model_id.replace("{MODEL_ZOO_PATH}", zoo)
        if model_id.startswith(("./", "../")):
            model_id = str(self.resolve_path(Path(model_id)))
        return model_id

    def task_models(self) -> dict[str, list[str]]:
        return {task: list(spec.options) for task, spec in self.tasks.items()}


def _check_source(config: Config, name: str, spec: ModelSpec) -> None:
    """A source must land where the model's loader looks for it (its model_id)."""
    if spec.variant_of is not None and spec.variant_of not in config.models:
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


def _env_overrides() -> dict[str, Any]:
    """`ZOOSERVE_<KEY>` overrides a top-level key; values are parsed as YAML scalars."""
    overrides: dict[str, Any] = {}
    scalar_keys = {
        "device",
        "memory_budget_mb",
        "media_root",
        "model_zoo_path",
        "default_keep_alive",
        "admission_timeout_s",
        "max_pending",
        "max_wait_s",
        "host_memory_budget_mb",
        "max_frames_per_request",
        "max_request_mb",
        "max_json_mb",
        "log_json",
        "jobs_keep",
        "jobs_max_age_s",
        "max_frame_pixels",
        "max_decoded_mb",
        "max_track_frames",
        "inference_timeout_s",
        "max_json_depth",
    }
    for key in scalar_keys:
        raw = os.environ.get(f"ZOOSERVE_{key.upper()}")
        if raw is not None:
            overrides[key] = yaml.safe_load(raw)
    return overrides


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"invalid config {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (remove it or check its spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None) -> Config:
    """Read, override from the environment, and validate. Raises ConfigError naming the key.
    Which file: zooserve.catalog.location (`path`, $ZOOSERVE_CONFIG, ..., the packaged one)."""
    location = locate_config(path)
    path = location.path
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}", {"path": str(path)}) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {path}: expected a mapping at the top level")
    raw.update(_env_overrides())
    raw["base_dir"] = location.base_dir
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc), {"path": str(path)}) from exc
