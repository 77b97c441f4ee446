"""Ontology augmentation: an LLM suggests entity types, event types, roles and relationships
that a persona's ontology lacks.

The model answers in a JSON schema (`AugmentOutput`). Its suggestions are then cleaned: one that
repeats an existing type is dropped, and suggestions that mean the same thing are merged, the
most confident one kept. "The same" is first by spelling (`normalize`: case, spaces, `_`, `-`,
a plural `s`), then by the cosine similarity of the names' sentence embeddings (the first
`sentence_transformers` model configured, all-MiniLM-L6-v2; without one, by spelling only, with
a warning). Every drop and merge is reported.

MiniLM similarities of names, measured: Bike/Bicycle 0.92, Fight/Fighting 0.91, Parked car/
Parked vehicle 0.94, but Car/Vehicle 0.87, Running/Jogging 0.80, Person/Pedestrian 0.65. Names
score higher than "name: description" texts, whose wording varies. Hence the default threshold
0.9 (`options.similarity_threshold` of the embedder model changes it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from zooserve.core.errors import require_text
from zooserve.engines.pool import EnginePool
from zooserve.engines.types import ChatMessage, GenerationRequest

TASK = "ontology_augmentation"
CATEGORIES = ("entity_types", "event_types", "roles", "relationships")
Category = Literal["entity_types", "event_types", "roles", "relationships"]
EMBEDDER_FAMILY = "sentence_transformers"
#: Cosine similarity of two names at or above which they are the same type (module docstring).
DEFAULT_SIMILARITY = 0.9
log = logging.getLogger("zooserve.pipelines.augment")


class ExistingType(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    parent: str | None = None


class Ontology(BaseModel):
    """The persona's current ontology; each entry a name or {name, description, parent}."""

    model_config = ConfigDict(extra="forbid")
    entity_types: list[ExistingType | str] = Field(default_factory=list)
    event_types: list[ExistingType | str] = Field(default_factory=list)
    roles: list[ExistingType | str] = Field(default_factory=list)
    relationships: list[ExistingType | str] = Field(default_factory=list)

    def names(self) -> list[str]:
        return [
            item if isinstance(item, str) else item.name
            for category in CATEGORIES
            for item in getattr(self, category)
        ]


class Suggestion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=80)
    description: str = Field(max_length=400)
    parent: str | None = Field(max_length=80, description="an existing or suggested type, or null")
    examples: list[str] = Field(max_length=5)
    confidence: float = Field(ge=0, le=1)


class AugmentOutput(BaseModel):
    """What the model must answer (all keys required, sizes bounded for constrained decoders)."""

    model_config = ConfigDict(extra="forbid")
    entity_types: list[Suggestion] = Field(max_length=12)
    event_types: list[Suggestion] = Field(max_length=12)
    roles: list[Suggestion] = Field(max_length=12)
    relationships: list[Suggestion] = Field(max_length=12)
    reasoning: str = Field(max_length=2000)


class MergedSuggestion(Suggestion):
    merged_from: list[str] = Field(default_factory=list)


@dataclass
class AugmentResult:
    persona_name: str
    suggestions: dict[str, list[MergedSuggestion]]
    reasoning: str
    model: str
    engine: str
    processing_time: float
    structured: bool
    dedup: Literal["embedding", "spelling"]
    dropped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def normalize(name: str) -> str:
    """Key of a type name, blind to case, spaces, `_`, `-` and a plural `s` ("Delivery vans" and
    "delivery_van" are one type)."""
    key = re.sub(r"[\s_\-]+", "", name).casefold()
    return key[:-1] if len(key) > 3 and key.endswith("s") and not key.endswith("ss") else key


def build_messages(
    persona_name: str, ontology: Ontology, domain_context: str, task_description: str
) -> tuple[ChatMessage, ...]:
    existing = {
        c: [i if isinstance(i, str) else i.model_dump() for i in getattr(ontology, c)]
        for c in CATEGORIES
    }
    system = (
        "You are an ontology engineer for video annotation. Suggest NEW entity types, event "
        "types, roles and relationships that the persona's ontology lacks and their task needs. "
        "Never repeat a type that exists. Give each a short description, a parent (an existing "
        "or suggested type, or null), a few concrete examples and your confidence from 0 to 1. "
        "Explain your choices in reasoning."
    )
    user = (
        f"Persona: {persona_name.strip()}\n"
        f"Domain: {domain_context.strip() or '(not given)'}\n"
        f"Task: {task_description.strip() or '(not given)'}\n"
        f"Existing ontology: {json.dumps(existing, ensure_ascii=False)}"
    )
    return (ChatMessage("system", system), ChatMessage("user", user))


async def augment(
    pool: EnginePool,
    persona_name: str,
    existing_ontology: Ontology,
    domain_context: str = "",
    task_description: str = "",
    *,
    model: str | None = None,
) -> AugmentResult:
    """Ask the model, then drop repeats of existing types and merge near-duplicates."""
    started = time.perf_counter()
    require_text(persona_name, "persona_name")
    name = pool.select_model(TASK, model)
    messages = build_messages(persona_name, existing_ontology, domain_context, task_description)
    generation = await pool.generate(
        GenerationRequest(model=name, messages=messages, output=AugmentOutput)
    )
    warnings = [f"{f.engine} failed first: {f.reason}" for f in generation.failures]
    data = generation.data
    if isinstance(data, AugmentOutput):
        raw = {c: list(getattr(data, c)) for c in CATEGORIES}
        reasoning = data.reasoning.strip()
    else:
        warnings.append(f"the model's answer was not structured ({generation.invalid_reason})")
        raw = {c: [] for c in CATEGORIES}
        reasoning = generation.text.strip()[:2000]
    cleaner = _Cleaner(existing_ontology.names(), pool)
    await cleaner.prepare(raw)
    if cleaner.method == "spelling":
        warnings.append(
            f"no {EMBEDDER_FAMILY} model is configured and available: near-duplicates were "
            "merged by spelling only"
        )
    return AugmentResult(
        persona_name=persona_name,
        suggestions={c: cleaner.clean(c, raw[c]) for c in CATEGORIES},
        reasoning=reasoning,
        model=name,
        engine=generation.engine,
        processing_time=time.perf_counter() - started,
        structured=isinstance(data, AugmentOutput),
        dedup=cleaner.method,
        dropped=cleaner.dropped,
        warnings=warnings,
    )


class _Cleaner:
    """Drops repeats of existing types and merges near-duplicate suggestions (one request)."""

    def __init__(self, existing: list[str], pool: EnginePool) -> None:
        self.existing = {normalize(n): n for n in existing if n.strip()}
        self.pool = pool
        self.vectors: dict[str, np.ndarray] = {}
        self.method: Literal["embedding", "spelling"] = "spelling"
        self.threshold = DEFAULT_SIMILARITY
        self.dropped: list[dict[str, Any]] = []

    def _embedder(self) -> str | None:
        manager = self.pool.manager
        for model_name, spec in self.pool.config.models.items():
            if spec.family == EMBEDDER_FAMILY and manager.available(model_name):
                return model_name
        return None

    async def prepare(self, raw: dict[str, list[Suggestion]]) -> None:
        """Embed every suggested and existing name at once (one model lease)."""
        texts = sorted(
            {s.name.strip() for items in raw.values() for s in items} | set(self.existing.values())
        )
        embedder = self._embedder()
        if embedder is None or not texts:
            self.method = "embedding" if embedder else "spelling"
            return
        manager = self.pool.manager
        self.threshold = float(
            manager.state(embedder).spec.options.get("similarity_threshold", DEFAULT_SIMILARITY)
        )
        async with manager.use(embedder) as adapter:
            vectors = await manager.infer(adapter.embed_texts, texts)  # type: ignore[attr-defined]
        self.vectors = dict(zip(texts, vectors, strict=True))
        self.method = "embedding"

    def _similar(self, a: str, b: str) -> float:
        if normalize(a) == normalize(b):
            return 1.0
        va, vb = self.vectors.get(a.strip()), self.vectors.get(b.strip())
        return float(va @ vb) if va is not None and vb is not None else 0.0

    def clean(self, category: str, items: list[Suggestion]) -> list[MergedSuggestion]:
        kept: list[MergedSuggestion] = []
        for item in sorted(items, key=lambda s: -s.confidence):
            name = item.name.strip()
            if not name:
                continue
            twin = self.existing.get(normalize(name)) or next(
                (e for e in self.existing.values() if self._similar(name, e) >= self.threshold),
                None,
            )
            if twin is not None:
                self._drop(category, name, f"repeats the existing type {twin!r}")
                continue
            match = next((k for k in kept if self._similar(name, k.name) >= self.threshold), None)
            if match is None:
                kept.append(MergedSuggestion(**{**item.model_dump(), "name": name}))
                continue
            match.merged_from.append(name)
            match.examples = list(dict.fromkeys([*match.examples, *item.examples]))[:5]
            self._drop(category, name, f"merged into {match.name!r}")
        return kept

    def _drop(self, category: str, name: str, reason: str) -> None:
        self.dropped.append({"category": category, "name": name, "reason": reason})
