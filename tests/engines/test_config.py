"""The `engines:` config section: validation with key paths, URLs, and pool-level checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zooserve.catalog import Config, load_config
from zooserve.catalog.engines import EngineSpec
from zooserve.core.errors import ConfigError
from zooserve.engines.pool import EnginePool, served_model_name
from zooserve.manager import ModelManager

MODELS = {"vlm": {"model_id": "Qwen/Qwen2.5-VL-7B-Instruct"}, "llm": {"model_id": "./llm"}}


def write(tmp_path: Path, engines: list[dict[str, object]]) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu", "models": MODELS, "engines": engines}))
    return path


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"name": "a", "kind": "vllm", "models": ["vlm"]}, "needs base_url"),
        (
            {"name": "a", "kind": "tgi", "base_url": "http://h:1", "models": ["vlm"]},
            "engines.0.kind",
        ),
        ({"name": "a", "kind": "local", "base_url": "http://h:1", "models": ["vlm"]}, "in-process"),
        ({"name": "a", "kind": "sglang", "base_url": "h:1", "models": ["vlm"]}, "http://"),
        (
            {"name": "a", "kind": "sglang", "base_url": "http://h:1", "models": []},
            "engines.0.models",
        ),
        (
            {
                "name": "a",
                "kind": "openai",
                "base_url": "http://h:1",
                "models": ["vlm"],
                "launch": {},
            },
            "launch.command is required",
        ),
        (
            {
                "name": "a",
                "kind": "vllm",
                "base_url": "http://h:1",
                "models": ["vlm", "llm"],
                "launch": {},
            },
            "exactly one model",
        ),
        (
            {"name": "a", "kind": "vllm", "base_url": "http://h:1", "models": ["vlm"], "port": 1},
            "engines.0.port: unknown key",
        ),
    ],
)
def test_invalid_engines_fail_at_load_naming_the_key(
    tmp_path: Path, engine: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, [engine]))
    assert message in caught.value.message


def test_urls_and_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            [
                {
                    "name": "s",
                    "kind": "sglang",
                    "base_url": "http://h:30000/v1/",
                    "models": ["vlm"],
                },
                {"name": "l", "kind": "local", "models": ["llm"]},
            ],
        )
    )
    sglang, local = config.engines
    assert isinstance(sglang, EngineSpec)
    assert sglang.root_url == "http://h:30000" and sglang.api_url == "http://h:30000/v1"
    assert sglang.structured_mode == "json_schema" and sglang.sleep_protocol is None
    assert local.kind == "local" and local.base_url is None
    # Engines get the hub id, or the resolved local path, unless options.served_model_name says.
    assert served_model_name(config, "vlm") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert served_model_name(config, "llm") == str(tmp_path / "llm")


def pool_for(engines: list[dict[str, object]]) -> EnginePool:
    config = Config(device="cpu", models=MODELS, engines=engines)  # type: ignore[arg-type]
    return EnginePool(config, ModelManager(config))


def test_pool_rejects_unknown_models_and_duplicate_names() -> None:
    with pytest.raises(ConfigError, match=r"engines\[0\] \(a\)\.models names 'nope'"):
        pool_for([{"name": "a", "kind": "local", "models": ["nope"]}])
    twice = {"name": "a", "kind": "local", "models": ["llm"]}
    with pytest.raises(ConfigError, match="names must be unique"):
        pool_for([twice, twice])


def test_engine_status_lists_engines_in_priority_order() -> None:
    pool = pool_for(
        [
            {"name": "main", "kind": "vllm", "base_url": "http://127.0.0.1:1", "models": ["vlm"]},
            {"name": "local", "kind": "local", "models": ["vlm", "llm"]},
        ]
    )
    status = pool.engine_status()
    assert list(status) == ["main", "local"]
    assert status["main"]["priority"] == 0 and status["main"]["state"] == "unknown"
    assert status["local"]["models"] == ["vlm", "llm"] and status["local"]["managed"] is None
    assert pool.model_status("vlm") == {"engines": ["main", "local"], "engine_available": True}
