"""The config file: the top-level settings (Config), tasks, the zoo section, env overrides, and
load_config with key-path messages (DESIGN.md "Configuration"). Unknown keys are errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from zooserve.catalog.engines import EngineSpec
from zooserve.catalog.location import locate_config
from zooserve.catalog.models import ModelSpec, check_source, parse_keep_alive
from zooserve.catalog.strict import StrictModel
from zooserve.catalog.zoo import TriggerSpec, check_trigger_graph, check_trigger_models
from zooserve.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/models.yaml")
TaskName = Literal[
    "object_detection", "video_tracking", "video_summarization", "ontology_augmentation"
]
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TaskSpec(StrictModel):
    selected: str
    options: list[str]

    @model_validator(mode="after")
    def _selected_among_options(self) -> TaskSpec:
        if self.selected not in self.options:
            raise ValueError(f"selected {self.selected!r} is not among options {self.options}")
        return self


class ZooSection(StrictModel):
    """Declarative enrichment rules (used by the zoo pipeline); see zooserve.catalog.zoo."""

    triggers: list[TriggerSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_graph(self) -> ZooSection:
        check_trigger_graph(self.triggers)
        return self


class Config(StrictModel):
    device: str = "auto"
    memory_budget_mb: float | Literal["auto"] = "auto"
    media_root: Path = Path("./media")
    model_zoo_path: Path = Path("./models")
    default_keep_alive: str | float = "5m"
    #: Seconds a request waits for busy models to free room before a 503.
    admission_timeout_s: float = Field(default=30.0, ge=0)
    #: Requests that may wait for memory at once; past it, 429 with Retry-After.
    max_pending: int = Field(default=64, ge=1)
    #: The age cap of swap scheduling: a request that waited this long goes first and may
    #: evict models other queued requests need (0: arrival order). Several loads long: a
    #: request for a less wanted model often waits two or three loads, and a cap that fires
    #: on such waits brings the thrash back (bench/churn_replay.py: 1 s with 1 s loads 2x).
    max_wait_s: float = Field(default=10.0, ge=0)
    #: Milliseconds a swap waits after the last request ended, for the answered client's next
    #: request (often for a resident model) to count first. About one client round trip: with
    #: clients farther away than that, swaps start before they ask again and loads go up
    #: (bench/churn_replay.py --rtt-s 0.06: 1.03-1.24x the ideal at 50 ms, 1.01-1.13x at 100).
    swap_settle_ms: float = Field(default=50.0, ge=0, le=10_000)
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
            check_source(self.models, name, model)
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
        "swap_settle_ms",
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
