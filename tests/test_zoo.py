"""Zoo triggers: the schema under `zoo.triggers` (errors name the trigger and key), the
selection of triggers a request runs, and the model-major plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from zooserve.catalog import load_config
from zooserve.catalog.zoo import (
    TriggerSpec,
    check_trigger_models,
    dependants,
    plan_steps,
    select_triggers,
)
from zooserve.core.errors import ConfigError, InvalidInput
from zooserve_bench.zoo import runnable_triggers, zoo_models

MODELS = {
    name: {"model_id": f"opencv:{name}.xml", "family": "opencv_cascade", "framework": "opencv"}
    for name in ("plate-det", "ocr", "face-det", "age", "gender", "clothes", "weather", "depth")
}
SEED_LIKE: list[dict[str, Any]] = [
    {"name": "plates", "model": "plate-det", "when": {"classes": ["car", "truck"]}},
    {"name": "plate_text", "model": "ocr", "source": "plates"},
    {"name": "faces", "model": "face-det", "when": {"classes": ["person"]}},
    {"name": "age", "model": "age", "source": "faces"},
    {"name": "gender", "model": "gender", "source": "faces"},
    {"name": "clothing", "model": "clothes", "when": {"classes": ["person"]}, "labels": ["coat"]},
    {"name": "weather", "model": "weather", "scope": "batch"},
    {"name": "depth", "model": "depth"},
]


def write_config(tmp_path: Path, triggers: list[dict[str, Any]]) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": MODELS, "zoo": {"triggers": triggers}}))
    return path


def specs(raw: list[dict[str, Any]]) -> list[TriggerSpec]:
    return [TriggerSpec.model_validate(t) for t in raw]


def test_seed_like_triggers_load_with_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, SEED_LIKE))
    plates, text = config.zoo.triggers[0], config.zoo.triggers[1]
    assert plates.scope == "detection" and plates.source == "primary"
    assert plates.when.matches("Car", 0.1) and plates.when.matches("a truck", 0.1)
    assert not plates.when.matches("person", 0.9) and not plates.when.matches("cartoon", 0.9)
    assert text.output_name == "plate_text" and text.crop_padding == pytest.approx(0.1)
    weather = config.zoo.triggers[6]
    assert weather.min_count == 0 and not weather.needs_detections  # runs without detections
    assert plates.min_count == 1 and plates.needs_detections


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t[1].update(source="plate"), "triggers[1] (plate_text).source: 'plate'"),
        (lambda t: t[0].update(source="plate_text"), "cycle plates -> plate_text -> plates"),
        (lambda t: t[3].update(name="faces"), "triggers[3] (faces): name repeats triggers[2]"),
        (lambda t: t[4].update(output="age"), "output 'age' is already written by trigger 'age'"),
        (lambda t: t[6].update(scope="video"), "zoo.triggers.6.scope"),
        (lambda t: t[0]["when"].update(min_confidence=2), "zoo.triggers.0.when.min_confidence"),
        (lambda t: t[0].update(colour="red"), "zoo.triggers.0.colour: unknown key"),
        (lambda t: t[2].pop("model"), "zoo.triggers.2.model: required key is missing"),
        (lambda t: t[2].update(name="primary"), "zoo.triggers.2.name"),
    ],
)
def test_invalid_triggers_name_the_trigger_and_key(
    tmp_path: Path, mutate: Any, expected: str
) -> None:
    triggers = yaml.safe_load(yaml.safe_dump(SEED_LIKE))  # deep copy
    mutate(triggers)
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, triggers))
    assert expected in caught.value.message


def test_unknown_model_names_the_trigger() -> None:
    triggers = specs(SEED_LIKE)
    check_trigger_models(triggers, MODELS)  # all known: no error
    triggers[3] = triggers[3].model_copy(update={"model": "vit-age"})
    with pytest.raises(ValueError, match=r"zoo.triggers\[3\] \(age\).model: 'vit-age'"):
        check_trigger_models(triggers, MODELS)


def test_plan_is_model_major_and_sources_come_first() -> None:
    triggers = specs(
        [
            {"name": "pet_depth", "model": "depth", "when": {"classes": ["cat"]}},
            {"name": "faces", "model": "face-det", "when": {"classes": ["person"]}},
            {"name": "age", "model": "age", "source": "faces"},
            # the same model again, fed by faces: depth waits for it, then one lease serves both
            {"name": "face_depth", "model": "depth", "source": "faces"},
            {"name": "plates", "model": "plate-det", "when": {"classes": ["car"]}},
            {"name": "plate_text", "model": "ocr", "source": "plates"},
        ]
    )
    steps = plan_steps(triggers)
    assert [(s.model, [t.name for t in s.triggers]) for s in steps] == [
        ("face-det", ["faces"]),
        ("depth", ["pet_depth", "face_depth"]),
        ("age", ["age"]),
        ("plate-det", ["plates"]),
        ("ocr", ["plate_text"]),
    ]


def test_selecting_a_chained_trigger_brings_its_sources() -> None:
    triggers = specs([*SEED_LIKE, {"name": "off", "model": "age", "enabled": False}])
    assert [t.name for t in select_triggers(triggers, ["age"])] == ["faces", "age"]
    assert "off" not in [t.name for t in select_triggers(triggers, None)]
    assert [t.name for t in select_triggers(triggers, ["off"])] == ["off"]
    with pytest.raises(InvalidInput, match="unknown triggers \\['ages'\\]"):
        select_triggers(triggers, ["ages"])
    assert sorted(dependants(triggers, "faces")) == ["age", "gender"]


def test_the_zoo_benchmark_picks_zoo_models_and_runnable_chains(tmp_path: Path) -> None:
    data = {
        "models": {
            **MODELS,
            "detector": {"model_id": "opencv:hog_people", "family": "opencv_hog"},
            "llm": {"model_id": "org/llm", "family": "llm", "framework": "sglang"},
            "tracker": {"model_id": "org/sam", "family": "sam2", "category": "tracking"},
        },
        "tasks": {"object_detection": {"selected": "detector", "options": ["detector"]}},
        "zoo": {"triggers": SEED_LIKE},
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    assert zoo_models(config) == list(MODELS)  # not the task's detector, engines or trackers
    available = set(MODELS) - {"plate-det"}
    assert runnable_triggers(config, available) == [
        name for name in (t["name"] for t in SEED_LIKE) if name not in ("plates", "plate_text")
    ]
