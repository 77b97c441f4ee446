"""ONNX Runtime sessions on the zoo's devices. No GPU here: the provider lists ORT would
report on a CUDA machine are given by hand, and the CUDA device the adapters are asked for is
injected (this machine's ORT is the CPU build, exactly the build a GPU machine must refuse)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TinyModels
from zooserve.catalog import ModelSpec
from zooserve.core.errors import ModelLoadFailed
from zooserve.families.onnx.osnet import OsnetEmbedder
from zooserve.families.onnx.rapidocr import RapidOcrReader
from zooserve.runtimes.onnx_runtime import (
    MB,
    execution_providers,
    require_device,
    warmup_batch_size,
)

WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_execution_providers() -> None:
    assert execution_providers("cuda:1", WITH_CUDA, 50 * MB) == [
        (
            "CUDAExecutionProvider",
            {"device_id": 1, "arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": 50 * MB},
        ),
        "CPUExecutionProvider",
    ]
    cuda, options = execution_providers("cuda", WITH_CUDA)[0]
    assert cuda == "CUDAExecutionProvider" and options["device_id"] == 0
    assert "gpu_mem_limit" not in options  # no claim known: ORT's own limit
    assert execution_providers("cpu", WITH_CUDA) == ["CPUExecutionProvider"]


def test_a_cuda_device_without_the_cuda_provider_is_refused_not_run_on_the_cpu() -> None:
    with pytest.raises(ModelLoadFailed) as refused:
        execution_providers("cuda:0", ["CPUExecutionProvider"])
    assert refused.value.details["available_providers"] == ["CPUExecutionProvider"]
    assert "zooserve[cuda]" in str(refused.value)


def test_a_session_that_fell_back_to_the_cpu_fails_the_load() -> None:
    require_device("m", "cuda:0", WITH_CUDA)  # CUDA first: fine
    require_device("m", "cpu", ["CPUExecutionProvider"])
    with pytest.raises(ModelLoadFailed, match="not on cuda:0"):
        require_device("m", "cuda:0", ["CPUExecutionProvider"])  # ORT dropped CUDA


def test_both_onnx_families_refuse_cuda_on_a_cpu_build(tiny_models: TinyModels) -> None:
    osnet = tiny_models.path("osnet") / "osnet_tiny.onnx"
    adapter = OsnetEmbedder(ModelSpec(name="reid", model_id=str(osnet)), str(osnet), "cuda:0")
    with pytest.raises(ModelLoadFailed):
        adapter.load()  # before: a warning, and the "GPU" model ran on the CPU
    source = RapidOcrReader.builtin_source("rapidocr:ppocr")
    assert source is not None and Path(source).is_dir()
    reader = RapidOcrReader(ModelSpec(name="ocr", model_id="rapidocr:ppocr"), source, "cuda:0")
    with pytest.raises(ModelLoadFailed):
        reader.load()


def test_the_warm_up_runs_the_largest_batch_a_lane_hands_the_model(
    tiny_models: TinyModels,
) -> None:
    osnet = tiny_models.path("osnet") / "osnet_tiny.onnx"
    spec = ModelSpec(name="reid", model_id=str(osnet), options={"max_batch_size": 6})
    adapter = OsnetEmbedder(spec, str(osnet), "cpu")
    adapter.load()
    batches: list[int] = []
    embed = adapter.embed_images

    def counted(images: Sequence[np.ndarray]) -> np.ndarray:
        batches.append(len(images))
        return embed(images)

    adapter.embed_images = counted  # type: ignore[method-assign]
    adapter.warmup()
    assert batches == [6]  # before: one crop, so ORT's arena grew at the first full batch
    assert warmup_batch_size({}) == 4 and warmup_batch_size({"batch_size": 2}) == 2
