"""The config file: schema, validation with key-path messages, env overrides, model sources.

Everything outside tools rely on lives here (DESIGN.md "Configuration"), split by section:
settings (the top level, tasks, load_config), models (ModelSpec, ModelSource, id rules),
engines, zoo (triggers and their planner), location (which file). `from zooserve.catalog import
X` reaches them all. Where a configured model's weights are on this machine is
zooserve.families.sources: it needs the model adapters, which import this package, so the
catalog imports no adapter code.
"""

from __future__ import annotations

from zooserve.catalog.models import (
    SERVING_OPTIONS,
    Framework,
    ModelSource,
    ModelSpec,
    is_builtin_id,
    is_hub_id,
    parse_keep_alive,
)
from zooserve.catalog.settings import (
    DEFAULT_CONFIG_PATH,
    Config,
    TaskName,
    TaskSpec,
    ZooSection,
    load_config,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "SERVING_OPTIONS",
    "Config",
    "Framework",
    "ModelSource",
    "ModelSpec",
    "TaskName",
    "TaskSpec",
    "ZooSection",
    "is_builtin_id",
    "is_hub_id",
    "load_config",
    "parse_keep_alive",
]
