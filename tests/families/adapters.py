"""Adapters as the manager builds them: a `ModelSpec`, the registry's class for its family, a
source and a device (the CPU here). Shared by the family tests and the contract test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from zooserve.catalog import ModelSpec
from zooserve.families import adapter_class
from zooserve.families.base import ModelAdapter

AdapterT = TypeVar("AdapterT", bound=ModelAdapter)


def make_adapter(
    cls: type[AdapterT],
    source: Path | str,
    family: str | None = None,
    **spec_fields: Any,
) -> AdapterT:
    """An unloaded `cls` over `source`, built by the registry for `family` (default
    `cls.family`). The spec is a tiny model's entry (`<family>-tiny`, `model_id` = the source)
    unless `spec_fields` (options, framework, model_id, ...) say otherwise."""
    family = family or cls.family
    fields = {"name": f"{family}-tiny", "model_id": str(source), **spec_fields}
    adapter = adapter_class(family)(ModelSpec(family=family, **fields), str(source), "cpu")
    assert isinstance(adapter, cls), f"the registry builds {type(adapter)} for {family}"
    return adapter


def load_adapter(
    cls: type[AdapterT], source: Path | str, family: str | None = None, **spec_fields: Any
) -> AdapterT:
    """`make_adapter`, loaded."""
    adapter = make_adapter(cls, source, family, **spec_fields)
    adapter.load()
    return adapter
