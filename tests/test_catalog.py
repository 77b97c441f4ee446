"""Config validation: each mistake is a start-up error naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zooserve import catalog
from zooserve.catalog import load_config
from zooserve.core.errors import ConfigError

SHIPPED = Path(__file__).parents[1] / "config" / "models.yaml"
MINIMAL = {
    "device": "cpu",
    "tasks": {"object_detection": {"selected": "face", "options": ["face"]}},
    "models": {
        "face": {
            "model_id": "opencv:haarcascade_frontalface_default.xml",
            "family": "opencv_cascade",
            "framework": "opencv",
        }
    },
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_config_is_valid_and_lists_the_zoo() -> None:
    config = load_config(SHIPPED)
    assert set(config.tasks) == {
        "object_detection",
        "video_tracking",
        "video_summarization",
        "ontology_augmentation",
    }
    assert {"owlv2-base", "grounding-dino-base", "florence-2-large", "yolo-world-v2"} <= set(
        config.tasks["object_detection"].options
    )
    zoo = [
        n
        for n, m in config.models.items()
        if m.category not in {"tracking", "summarization", "ontology"}
    ]
    assert len(zoo) >= 23
    assert config.models["yolo26-general"].enabled  # YOLO26 weights are published
    assert config.models["yolo26-general"].source.ultralytics == "yolo26n.pt"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(colour="blue"), "colour: unknown key"),
        (lambda c: c["models"]["face"].update(vram=1), "models.face.vram: unknown key"),
        (
            lambda c: c.update(device="gpu"),
            "device: Value error, expected auto, cpu, cuda or cuda:N",
        ),
        (
            lambda c: c["tasks"]["object_detection"].update(selected="other"),
            "tasks.object_detection: Value error, selected 'other' is not among options",
        ),
        (
            lambda c: c["tasks"]["object_detection"]["options"].append("ghost"),
            "names 'ghost', which is not under models:",
        ),
        (lambda c: c["models"]["face"].update(keep_alive="soon"), "models.face.keep_alive"),
        (
            lambda c: c["models"]["face"].pop("model_id"),
            "models.face.model_id: required key is missing",
        ),
        (
            lambda c: c["tasks"].update(dancing={"selected": "face", "options": ["face"]}),
            "tasks.dancing",
        ),
        (lambda c: c.update(max_json_mb=0), "max_json_mb: Input should be greater than 0"),
        (lambda c: c.update(max_json_mb=512), "max_json_mb: Input should be less than or equal"),
    ],
)
def test_config_mistakes_name_file_and_key(tmp_path: Path, mutate, expected: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in excinfo.value.message
    assert expected in excinfo.value.message


def test_env_overrides_top_level_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("ZOOSERVE_MEMORY_BUDGET_MB", "123")
    monkeypatch.setenv("ZOOSERVE_MEDIA_ROOT", "/srv/videos")
    config = load_config(path)
    assert config.memory_budget_mb == 123
    assert config.media_dir == Path("/srv/videos")
    monkeypatch.setenv("ZOOSERVE_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="device"):
        load_config(path)


def test_json_bodies_have_a_small_limit_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.max_json_mb, config.max_request_mb) == (4, 512)
    monkeypatch.setenv("ZOOSERVE_MAX_JSON_MB", "0.5")
    assert load_config(write(tmp_path, MINIMAL)).max_json_mb == 0.5


def test_swap_settling_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(write(tmp_path, MINIMAL)).swap_settle_ms == 50
    monkeypatch.setenv("ZOOSERVE_SWAP_SETTLE_MS", "120")
    assert load_config(write(tmp_path, MINIMAL)).swap_settle_ms == 120
    monkeypatch.setenv("ZOOSERVE_SWAP_SETTLE_MS", "-1")
    with pytest.raises(ConfigError, match="swap_settle_ms"):
        load_config(write(tmp_path, MINIMAL))


def test_keep_alive_durations() -> None:
    assert catalog.parse_keep_alive("5m") == 300
    assert catalog.parse_keep_alive("250ms") == 0.25
    assert catalog.parse_keep_alive(-1) == -1
    with pytest.raises(ValueError):
        catalog.parse_keep_alive("forever")


def test_model_zoo_path_expands_against_the_config_dir(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["model_zoo_path"] = "zoo"
    data["models"]["local"] = {"model_id": "{MODEL_ZOO_PATH}/thing.pt", "framework": "ultralytics"}
    config = load_config(write(tmp_path, data))
    assert config.expand_model_id(config.models["local"]) == str(tmp_path / "zoo" / "thing.pt")


#: The seed's language-model ids, under the seed's task names.
SEED_MODELS = {
    "video_summarization": [
        "llama-4-maverick",
        "gemma-3-27b",
        "qwen2-5-vl-72b",
        "internvl3-78b",
        "pixtral-large",
    ],
    "ontology_augmentation": ["llama-4-scout", "llama-3-3-70b", "deepseek-v3"],
}


def test_every_shipped_model_can_be_fetched_or_says_why_not() -> None:
    config = load_config(SHIPPED)
    for name, spec in config.models.items():
        if catalog.is_builtin_id(spec.model_id):
            assert spec.source is None, name  # ships in a package
            continue
        assert spec.source is not None, f"{name}: no source and no reason"
        if spec.source.kind == "none":
            assert len(str(spec.source.none)) > 40, name  # a reason a person can act on
        elif spec.source.kind == "repo":
            assert spec.source.files, name
        if catalog.is_hub_id(spec.model_id) and spec.source.kind == "repo":
            assert spec.source.repo == spec.model_id, name  # the loader finds it by model_id
    unfetchable = [n for n, m in config.models.items() if m.source and m.source.kind == "none"]
    assert unfetchable == ["vehicle-segment-classification"]


def test_shipped_zoo_facts_are_current() -> None:
    models = load_config(SHIPPED).models
    assert models["vitpose-small"].model_id == "usyd-community/vitpose-plus-small"
    damage = models["vehicle-damage-detection"]
    assert "yolo11x-seg" in damage.model_id and (damage.vram_mb or 0) >= 500
    assert models["threat-detection-yolov8n"].source.files == ["weights/best.pt"]
    weather = models["weather-classification"].source
    assert "model.safetensors" in weather.files and not any("*" in f for f in weather.files)
    gd = models["grounding-dino-base"]
    assert "1.5 has no open weights" in gd.description
    assert "Grounding DINO 1.5" in SHIPPED.read_text()


def test_the_seeds_language_models_answer_under_the_seeds_ids() -> None:
    config = load_config(SHIPPED)
    served = {m for engine in config.engines for m in engine.models}
    for task, names in SEED_MODELS.items():
        for name in names:
            assert name in config.tasks[task].options, (task, name)  # type: ignore[index]
            spec = config.models[name]
            assert catalog.is_hub_id(spec.model_id) and spec.framework in ("sglang", "vllm")
            assert (spec.vram_mb or 0) > 16000, name
            assert name in served, name
    variants = {m.variant_of: n for n, m in config.models.items() if m.variant_of}
    assert variants["gemma-3-27b"] == "gemma-3-27b-w4a16"
    assert config.models[variants["qwen2-5-vl-72b"]].model_id == "Qwen/Qwen2.5-VL-72B-Instruct-AWQ"
    assert set(variants) >= {"llama-4-maverick", "llama-4-scout", "llama-3-3-70b", "deepseek-v3"}
    for base, variant in variants.items():
        assert config.models[variant].vram_mb < config.models[base].vram_mb, variant


def test_selecting_a_seed_model_is_no_startup_error(tmp_path: Path) -> None:
    from zooserve.engines.pool import EnginePool
    from zooserve.manager import ModelManager

    data = yaml.safe_load(SHIPPED.read_text())
    data["tasks"]["video_summarization"]["selected"] = "gemma-3-27b"
    data["tasks"]["ontology_augmentation"]["selected"] = "llama-3-3-70b"
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    pool = EnginePool(config, ModelManager(config))
    assert pool.select_model("video_summarization", None) == "gemma-3-27b"
    assert pool.select_model("ontology_augmentation", None) == "llama-3-3-70b"


@pytest.mark.parametrize(
    ("source", "model_id", "expected"),
    [
        ({"repo": "org/m"}, "org/m", "lists the files to take"),
        ({"repo": "org/m", "files": ["a"], "none": "x"}, "org/m", "exactly one of"),
        ({"repo": "org/other", "files": ["a"]}, "org/m", "must be the same"),
        ({"ultralytics": "yolo26n.pt"}, "org/m", "needs a local model_id"),
        ({"none": "why"}, "org/m", None),
        ({"repo": "org/m", "files": ["a"], "sha256": {"a": "xyz"}}, "org/m", "64 lowercase hex"),
    ],
)
def test_source_mistakes_are_startup_errors(
    tmp_path: Path, source: dict, model_id: str, expected: str | None
) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["m"] = {"model_id": model_id, "source": source}
    path = write(tmp_path, data)
    if expected is None:
        assert load_config(path).models["m"].source.none == "why"
        return
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_variant_of_must_name_a_model(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["q"] = {"model_id": "org/q-awq", "variant_of": "ghost"}
    with pytest.raises(ConfigError, match="variant_of names 'ghost'"):
        load_config(write(tmp_path, data))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"concurrency": 0}, "options.concurrency must be a number >= 1"),
        ({"max_batch_size": "8"}, "options.max_batch_size must be a number"),
        ({"max_batch_size": 2.5}, "whole number"),
        ({"max_batch_wait_ms": -1}, "options.max_batch_wait_ms must be a number >= 0"),
        ({"concurrency": True}, "options.concurrency must be a number"),
    ],
)
def test_lane_and_batching_options_are_checked_at_start_up(
    options: dict, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=problem):
        catalog.Config.model_validate(
            {"models": {"m": {"model_id": "x/y", "options": options}}, "base_dir": tmp_path}
        )
