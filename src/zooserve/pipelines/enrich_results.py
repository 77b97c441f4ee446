"""What an enrichment run leaves: per frame its detections (`sv.Detections`, their enrichments
per row: see enrich_detections.py) and frame values, stage reports, errors, and one record per
model lease (loaded or not, evictions) read from the manager's event log. api/serializers.py
turns them into the response models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import supervision as sv

from zooserve.core.events import Event
from zooserve.manager import ModelManager


@dataclass
class FrameEnrichment:
    """One frame: its primary detections, each row's enrichments in `data["enrichments"]`
    (detector triggers' finds nested there as `sv.Detections`), and the frame's own values."""

    frame_number: int
    timestamp: float  # seconds
    width: int
    height: int
    detections: sv.Detections  # the primary layer (enrich_detections.py), frame pixels
    enrichments: dict[str, Any] = field(default_factory=dict)  # frame and batch triggers


@dataclass(frozen=True)
class StageError:
    stage: str  # trigger name, or "detect" for the primary detector
    model: str
    code: str
    message: str


@dataclass
class LoadRecord:
    """One lease: was the model loaded for it, how long that took, and whom it evicted."""

    model: str
    stages: list[str]
    loaded: bool
    load_seconds: float | None = None
    bytes: int | None = None
    evicted: list[str] = field(default_factory=list)
    failed: bool = False


@dataclass
class StageReport:
    name: str
    model: str
    scope: str
    status: str = "not_triggered"  # ok | failed | skipped | not_triggered
    inputs: int = 0
    seconds: float = 0.0
    reason: str | None = None


def events_since(manager: ModelManager, marker: Event | None) -> list[Event]:
    """The manager's events recorded after `marker` (the last event seen before)."""
    events = manager.events.recent(limit=1_000_000)
    for i in range(len(events) - 1, -1, -1):
        if events[i] is marker:
            return events[i + 1 :]
    return events


def last_event(manager: ModelManager) -> Event | None:
    """The newest event: the marker `events_since` counts from."""
    recent = manager.events.recent(limit=1)
    return recent[-1] if recent else None


def load_record(model: str, stages: list[str], events: Sequence[Event]) -> LoadRecord:
    loads = [e for e in events if e.kind == "load" and e.model == model]
    return LoadRecord(
        model=model,
        stages=stages,
        loaded=bool(loads),
        load_seconds=loads[-1].seconds if loads else None,
        bytes=loads[-1].bytes if loads else None,
        evicted=[e.model for e in events if e.kind == "evict"],
    )
