"""The local engine: a tiny random Llama / Llava run in-process through the ModelManager, its
answers grammar-constrained into schema-valid JSON whatever the (random) weights say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import TinyModels
from tests.engines.families import engine_families  # noqa: F401 - fixture
from zooserve.catalog import Config, ModelSpec
from zooserve.core.errors import ConfigError, InvalidInput, MissingDependency
from zooserve.engines.constrained import finish_reserve, minimal_json
from zooserve.engines.local import LocalGenerator
from zooserve.engines.pool import EnginePool
from zooserve.engines.types import ChatMessage, GenerationRequest
from zooserve.manager import ModelManager


class Tag(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=12)
    parent: str | None = Field(max_length=8)
    confidence: float = Field(ge=0, le=1)
    examples: list[str] = Field(max_length=2)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[Tag] = Field(max_length=3)
    kind: str = Field(json_schema_extra={"enum": ["event", "entity"]})
    count: int = Field(ge=0, le=9)
    reasoning: str = Field(max_length=24)


def ask(model: str, *, seed: int, temperature: float, images: tuple = ()) -> GenerationRequest:
    return GenerationRequest(
        model=model,
        messages=(ChatMessage("system", "Tag it."), ChatMessage("user", "Go.", images)),
        output=Answer,
        max_tokens=48,  # below the schema's finishing reserve: finishing starts early
        temperature=temperature,
        seed=seed,
    )


@pytest.fixture(scope="module")
def generator(tiny_models: TinyModels) -> LocalGenerator:
    path = str(tiny_models.path("llama"))
    adapter = LocalGenerator(ModelSpec(name="llm", model_id=path, family="local_llm"), path, "cpu")
    adapter.load()
    return adapter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_model_answers_schema_valid_json(generator: LocalGenerator, seed: int) -> None:
    generation = generator.generate(ask("llm", seed=seed, temperature=1.0))
    assert generation.invalid_reason is None, generation.text
    parsed = Answer.model_validate(json.loads(generation.text, strict=False), strict=True)
    assert generation.data == parsed and parsed.kind in ("event", "entity")
    assert generation.usage["completion_tokens"] <= finish_reserve(Answer.model_json_schema()) + 64


def test_the_mask_matters(generator: LocalGenerator) -> None:
    """Without the grammar, the same random model writes no JSON at all."""
    unconstrained = GenerationRequest(
        model="llm", messages=(ChatMessage("user", "Go."),), max_tokens=30, seed=0
    )
    text = generator.generate(unconstrained).text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text, strict=False)


def test_finishing_reserve_covers_the_worst_open_path() -> None:
    schema = Answer.model_json_schema()
    shortest = minimal_json(schema)
    assert shortest == {"tags": [], "kind": "event", "count": 0, "reasoning": ""}
    # Deepest open path: inside a tag (one more tag), inside its examples (one more string).
    tag = {"name": "", "parent": "", "confidence": 0, "examples": []}
    expected = len(json.dumps(shortest)) + len(json.dumps(tag)) + 2 + len('""') + 2 + 16
    assert finish_reserve(schema) == expected


@pytest.fixture(scope="module")
def pool(tiny_models: TinyModels, engine_families: None) -> EnginePool:  # noqa: F811
    models = {
        "llm": {"model_id": str(tiny_models.path("llama")), "family": "local_llm"},
        "vlm": {"model_id": str(tiny_models.path("llava")), "family": "local_llm"},
        "llm-4bit": {
            "model_id": str(tiny_models.path("llama")),
            "family": "local_llm",
            "quantization": "4bit",
        },
    }
    engines = [{"name": "local", "kind": "local", "models": list(models), "max_tokens": 48}]
    config = Config(device="cpu", memory_budget_mb=64, models=models, engines=engines)  # type: ignore[arg-type]
    return EnginePool(config, ModelManager(config))


async def test_pool_serves_through_the_manager(pool: EnginePool) -> None:
    frames = (skimage.data.astronaut()[::8, ::8], skimage.data.chelsea()[::8, ::8])
    generation = await pool.generate(ask("vlm", seed=0, temperature=0.0, images=frames))
    assert generation.engine == "local" and isinstance(generation.data, Answer)
    manager = pool.manager
    assert "vlm" in manager.loaded_models() and manager.used_bytes() > 0
    assert manager.model_info("vlm")["family"] == "local_llm"


async def test_images_for_a_text_only_model_are_a_422(pool: EnginePool) -> None:
    with pytest.raises(InvalidInput, match="text-only"):
        await pool.generate(
            ask("llm", seed=0, temperature=0.0, images=(np.zeros((8, 8, 3), np.uint8),))
        )


async def test_quantization_on_cpu_is_a_config_error(pool: EnginePool) -> None:
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        await pool.generate(ask("llm-4bit", seed=0, temperature=0.0))
    await pool.probe_all()
    assert "quantization needs CUDA" in pool.engine_status()["local"]["detail"]
    with pytest.raises(ConfigError):  # a probe's verdict does not blur the precise error
        await pool.generate(ask("llm-4bit", seed=0, temperature=0.0))


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="installed")
def test_quantization_without_bitsandbytes_names_the_install(tiny_models: TinyModels) -> None:
    # The device string alone (no GPU is touched before the dependency check).
    path = str(tiny_models.path("llama"))
    spec = ModelSpec(name="q", model_id=path, family="local_llm", quantization="8bit")
    with pytest.raises(MissingDependency, match="pip install bitsandbytes"):
        LocalGenerator(spec, path, "cuda:0")._quantization_config()


def test_estimate_halves_only_fp32_checkpoints_on_cuda(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    source = tiny_models.path("llama")
    stored = (source / "model.safetensors").stat().st_size
    assert LocalGenerator.estimate_bytes(str(source), "cpu") == stored
    assert LocalGenerator.estimate_bytes(str(source), "cuda:0") == stored // 2  # fp32 on disk
    bf16 = tmp_path / "bf16"
    bf16.mkdir()
    (bf16 / "model.safetensors").write_bytes(b"\0" * 1000)
    (bf16 / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    assert LocalGenerator.estimate_bytes(str(bf16), "cuda:0") == 1000
