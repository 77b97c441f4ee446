"""Shared by the manager's tests: `SizedModel`, a real torch module of a chosen size (its
tensor bytes are what the manager measures) built through an injected adapter factory, an
injected keep-alive clock, and a manager over such models on the CPU."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import supervision as sv
import torch

from zooserve.catalog import Config
from zooserve.families.base import Detector, make_detections
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import MB


class SizedModel(Detector):
    """A real torch module of `options.mb` megabytes; `options.fail` makes load raise."""

    family = "sized"
    loads: list[str] = []
    gate: threading.Event | None = None

    def load(self) -> None:
        SizedModel.loads.append(self.spec.name)
        if SizedModel.gate is not None:
            SizedModel.gate.wait(timeout=10)
        if self.spec.options.get("fail"):
            raise OSError("corrupt weights")
        if self.spec.options.get("oom_once") and SizedModel.loads.count(self.spec.name) == 1:
            raise MemoryError("out of memory (simulated: this machine has no GPU to exhaust)")
        floats = int(self.spec.options["mb"] * MB / 4)
        self.model = torch.nn.Linear(floats, 1, bias=False)

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def preprocess(self, images: Sequence[Any], prompts: Sequence[str] | None) -> Any:
        return images

    def forward(self, batch: Any) -> Any:
        return batch

    def postprocess(self, raw: Any, batch: Any, threshold: float) -> list[sv.Detections]:
        return [make_detections([], [], [], []) for _ in raw]


class LiveTensors:
    """The bytes of SizedModel tensors alive now (allocated on the loader thread, freed when
    their module is garbage), and every allocation made on top of more than the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes = 0
        self.lock = threading.Lock()
        self.problems: list[str] = []
        self.peak = 0  # the most bytes alive at once

    def allocated(self, name: str, nbytes: int) -> None:
        with self.lock:
            if self.bytes > self.budget:  # what was there before this load: must fit
                self.problems.append(
                    f"loading {name} ({nbytes} B) on top of {self.bytes} live bytes "
                    f"(budget {self.budget})"
                )
            self.bytes += nbytes
            self.peak = max(self.peak, self.bytes)

    def freed(self, nbytes: int) -> None:
        with self.lock:
            self.bytes -= nbytes


class TrackedModel(SizedModel):
    """A SizedModel whose tensor bytes are counted in a `LiveTensors` while they live."""

    live: LiveTensors

    def load(self) -> None:
        super().load()
        nbytes = self.memory_bytes()
        self.live.allocated(self.spec.name, nbytes)
        weakref.finalize(self.model, self.live.freed, nbytes)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_manager(
    tmp_path: Path, budget_mb: float, models: dict[str, dict], **kw: Any
) -> ModelManager:
    specs = {
        name: {"model_id": str(tmp_path), "family": "sized", "options": opts.pop("options"), **opts}
        for name, opts in ((n, dict(o)) for n, o in models.items())
    }
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": budget_mb,
            "admission_timeout_s": kw.pop("timeout", 0.5),
            **kw.pop("settings", {}),
            "models": specs,
            "base_dir": tmp_path,
        }
    )
    SizedModel.loads = []
    return ModelManager(
        config, adapter_factory=lambda spec, src, dev: SizedModel(spec, src, dev), **kw
    )


def model(mb: float, **extra: Any) -> dict:
    """A SizedModel of `mb` MB, estimated honestly unless `vram_mb` says otherwise."""
    return {"options": {"mb": mb, **extra.pop("options", {})}, "vram_mb": mb, **extra}


async def lease_once(manager: ModelManager, name: str) -> None:
    async with manager.use(name):
        pass
