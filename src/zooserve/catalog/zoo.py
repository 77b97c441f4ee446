"""Zoo triggers: the declarative enrichment rules under `zoo.triggers`, and their planner.

A trigger says which model enriches what: the crop of each matching detection (`detection`),
the whole frame (`frame`), all frames of a batch (`batch`) or the frames as one clip (`clip`).
Its `source` is the primary detections or another trigger's detections, which chains stages:
vehicle -> plate detector on the vehicle crop -> OCR on each plate crop.

The planner orders the triggers model-major: every model appears in as few steps as its chains
allow (once, unless one model serves two depths of a chain), and a step comes after the steps
of its sources. This module imports only the sections' base (strict.py) from the catalog, so
the config schema (settings.py) can import it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from zooserve.catalog.strict import StrictModel
from zooserve.core.errors import InvalidInput

#: The source name of the detections a request starts from (the caller's or the detector's).
PRIMARY = "primary"
Scope = Literal["detection", "frame", "batch", "clip"]
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")


class TriggerWhen(StrictModel):
    """Conditions on the source detections; a trigger fires only where they hold."""

    #: Labels of the source detection (case and a leading a/an/the ignored); None: any label.
    classes: list[str] | None = None
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    #: At least this many matching detections in the frame. Default: 1, except a frame/batch/clip
    #: trigger without `classes`, which fires on every frame (0).
    min_count: int | None = Field(default=None, ge=0)

    def matches(self, label: str, confidence: float) -> bool:
        if confidence < self.min_confidence:
            return False
        return self.classes is None or _plain(label) in {_plain(c) for c in self.classes}


def _plain(label: str) -> str:
    """Case and a leading article ignored: open-vocabulary prompts ("a person") match "person"."""
    words = label.lower().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


class TriggerSpec(StrictModel):
    """One entry under `zoo.triggers`."""

    name: str
    #: A key under `models:`.
    model: str
    scope: Scope = "detection"
    #: `primary`, or the name of a trigger whose model detects (its detections feed this one).
    source: str = PRIMARY
    when: TriggerWhen = Field(default_factory=TriggerWhen)
    #: Fraction of the box's width/height added on each side of a detection crop.
    crop_padding: float = Field(default=0.1, ge=0.0, le=1.0)
    #: Candidate labels: zero-shot classes, actions, or text prompts of an open-vocabulary detector.
    labels: list[str] | None = None
    #: Key the result is stored under (default: the trigger's name).
    output: str | None = None
    #: Score threshold for a detector model's own detections.
    threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    #: Keep at most this many detections per input (highest scores), e.g. 1 plate per vehicle.
    max_detections: int | None = Field(default=None, ge=1)
    #: Classifier scores kept per result (highest first).
    top_k: int = Field(default=5, ge=1)
    enabled: bool = True
    description: str = ""

    @field_validator("name", "output")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and (not _NAME.match(value) or value == PRIMARY):
            raise ValueError(
                f"{value!r} must be letters, digits, '_', '-' or '.', and not {PRIMARY!r}"
            )
        return value

    @property
    def output_name(self) -> str:
        return self.output or self.name

    @property
    def min_count(self) -> int:
        if self.when.min_count is not None:
            return self.when.min_count
        return 1 if self.scope == "detection" or self.when.classes is not None else 0

    @property
    def needs_detections(self) -> bool:
        """True when the trigger reads detections (so the primary detector must run)."""
        return self.scope == "detection" or self.min_count > 0


# --- validation -------------------------------------------------------------------------------


def _where(index: int, trigger: TriggerSpec) -> str:
    return f"triggers[{index}] ({trigger.name})"


def check_trigger_graph(triggers: Sequence[TriggerSpec]) -> None:
    """Unique names and outputs, known sources, no cycles. Raises ValueError naming the trigger."""
    index: dict[str, int] = {}
    outputs: dict[str, str] = {}
    for i, trigger in enumerate(triggers):
        if trigger.name in index:
            raise ValueError(f"{_where(i, trigger)}: name repeats triggers[{index[trigger.name]}]")
        index[trigger.name] = i
        if trigger.output_name in outputs:
            raise ValueError(
                f"{_where(i, trigger)}: output {trigger.output_name!r} is already written by "
                f"trigger {outputs[trigger.output_name]!r}; set a distinct `output`"
            )
        outputs[trigger.output_name] = trigger.name
    for i, trigger in enumerate(triggers):
        if trigger.source != PRIMARY and trigger.source not in index:
            raise ValueError(
                f"{_where(i, trigger)}.source: {trigger.source!r} is neither {PRIMARY!r} nor a "
                f"trigger (known: {sorted(index)})"
            )
    by_name = {t.name: t for t in triggers}
    for i, trigger in enumerate(triggers):
        chain = [trigger.name]
        current = trigger
        while current.source != PRIMARY:
            current = by_name[current.source]
            if current.name in chain:
                cycle = " -> ".join([*chain[chain.index(current.name) :], current.name])
                raise ValueError(f"{_where(i, trigger)}.source: cycle {cycle}")
            chain.append(current.name)


def check_trigger_models(triggers: Sequence[TriggerSpec], models: Collection[str]) -> None:
    """Every trigger names a model under `models:`. Raises ValueError naming the trigger."""
    for i, trigger in enumerate(triggers):
        if trigger.model not in models:
            raise ValueError(
                f"zoo.{_where(i, trigger)}.model: {trigger.model!r} is not under models: "
                f"(known: {sorted(models)})"
            )


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One lease of one model: the triggers it serves, all of whose sources ran before."""

    model: str
    triggers: tuple[TriggerSpec, ...]


def select_triggers(
    triggers: Sequence[TriggerSpec], names: Sequence[str] | None
) -> list[TriggerSpec]:
    """The enabled triggers (or the named ones, enabled or not) plus the sources they chain from.

    Raises InvalidInput naming unknown triggers; order follows the config.
    """
    by_name = {t.name: t for t in triggers}
    if names is None:
        wanted = {t.name for t in triggers if t.enabled}
    else:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise InvalidInput(
                f"unknown triggers {unknown}; configured: {sorted(by_name)}",
                {"unknown": unknown, "known": sorted(by_name)},
            )
        wanted = set(names)
    for name in list(wanted):
        source = by_name[name].source
        while source != PRIMARY and source not in wanted:
            wanted.add(source)
            source = by_name[source].source
    return [t for t in triggers if t.name in wanted]


def plan_steps(triggers: Sequence[TriggerSpec]) -> list[Step]:
    """Group triggers into model leases in dependency order (model-major).

    Repeatedly take the triggers whose sources are done; prefer a model all of whose remaining
    triggers are ready (then it is leased once), in config order; group its ready triggers.
    """
    done: set[str] = set()
    pending = list(triggers)
    steps: list[Step] = []
    while pending:
        ready = [t for t in pending if t.source == PRIMARY or t.source in done]
        if not ready:  # only after an unchecked cycle; check_trigger_graph prevents it
            raise ValueError(f"triggers form a cycle: {[t.name for t in pending]}")
        models = list(dict.fromkeys(t.model for t in ready))
        complete = [m for m in models if all(t in ready for t in pending if t.model == m)]
        model = (complete or models)[0]
        group = tuple(t for t in ready if t.model == model)
        steps.append(Step(model, group))
        done.update(t.name for t in group)
        pending = [t for t in pending if t not in group]
    return steps


def dependants(triggers: Sequence[TriggerSpec], name: str) -> list[str]:
    """Names of the triggers fed, directly or through a chain, by trigger `name`."""
    out: list[str] = []
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for t in triggers:
            if t.source == current and t.name not in out:
                out.append(t.name)
                frontier.append(t.name)
    return out
