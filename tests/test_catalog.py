"""Config validation: each mistake is a start-up error naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zooserve import catalog
from zooserve.catalog import load_config
from zooserve.errors import ConfigError

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
    assert config.models["yolo26-general"].enabled is False
    # The OpenCV detectors ship inside opencv-python-headless 4.14, so they are available offline.
    for name in ("opencv-hog-people", "opencv-face", "opencv-plate"):
        assert catalog.locate(config, config.models[name]) is not None, name


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


def test_keep_alive_durations() -> None:
    assert catalog.parse_keep_alive("5m") == 300
    assert catalog.parse_keep_alive("250ms") == 0.25
    assert catalog.parse_keep_alive(-1) == -1
    with pytest.raises(ValueError):
        catalog.parse_keep_alive("forever")


def test_model_zoo_path_expansion_and_missing_local_model(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["model_zoo_path"] = "zoo"
    data["models"]["local"] = {"model_id": "{MODEL_ZOO_PATH}/thing.pt", "framework": "ultralytics"}
    config = load_config(write(tmp_path, data))
    spec = config.models["local"]
    assert config.expand_model_id(spec) == str(tmp_path / "zoo" / "thing.pt")
    assert catalog.locate(config, spec) is None
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "thing.pt").write_bytes(b"x")
    assert catalog.locate(config, spec) == str(tmp_path / "zoo" / "thing.pt")


def test_hub_model_absent_offline_is_unavailable_without_download(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["owl"] = {"model_id": "google/owlv2-base-patch16-ensemble"}
    config = load_config(write(tmp_path, data))
    assert catalog.locate(config, config.models["owl"]) is None
    assert catalog.pull_command(config.models["owl"]) == "zooserve models pull owl"


def test_family_inferred_from_checkpoint_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "grounding-dino"}')
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["gd"] = {"model_id": str(model_dir)}
    config = load_config(write(tmp_path, data))
    spec = config.models["gd"]
    assert catalog.infer_family(config, spec, catalog.locate(config, spec)) == "grounding_dino"
