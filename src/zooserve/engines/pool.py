"""The engine pool: every configured engine, failover per request, health, managed launches.

A request for model M is offered to the engines that list M, in config order. An engine that
is down (known from a fresh probe or a failed request), times out, or answers 5xx is recorded
and the next one is asked; the answer says which engine served it. When none can, the caller
gets a 503 naming each engine and its reason (or the error every engine agreed on, e.g. a 422
for a request no engine accepts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zooserve.catalog import Config
from zooserve.catalog.engines import EngineSpec
from zooserve.core.aio import cancel_and_wait
from zooserve.core.errors import (
    ConfigError,
    FamilyNotImplemented,
    InvalidInput,
    MissingDependency,
    NoEngineAvailable,
    ServiceBusy,
    ZooError,
)
from zooserve.engines.client import Engine, OpenAIEngine
from zooserve.engines.health import EngineHealth
from zooserve.engines.launch import ManagedEngine, build_command
from zooserve.engines.local import LocalEngine
from zooserve.engines.types import EngineError, EngineFailure, Generation, GenerationRequest
from zooserve.manager import ModelManager

log = logging.getLogger("zooserve.engines")
_FINAL_ERRORS: dict[str, type[ZooError]] = {
    "config_error": ConfigError,
    "missing_dependency": MissingDependency,
    "family_not_implemented": FamilyNotImplemented,
}


@dataclass
class EngineSlot:
    engine: Engine
    health: EngineHealth = field(default_factory=EngineHealth)
    managed: ManagedEngine | None = None
    next_probe_at: float = 0.0

    @property
    def spec(self) -> EngineSpec:
        return self.engine.spec


def served_model_name(config: Config, model: str) -> str:
    """The name an OpenAI-compatible engine knows the model by: `options.served_model_name`, else
    its model_id (what `vllm serve` / `sglang` / `transformers serve` use by default)."""
    spec = config.models[model]
    return str(spec.options.get("served_model_name") or config.expand_model_id(spec))


class EnginePool:
    """All language engines of one service. Create after the manager; `start()` / `close()`."""

    def __init__(
        self, config: Config, manager: ModelManager, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config, self.manager, self.clock = config, manager, clock
        self.slots = [self._slot(index, spec) for index, spec in enumerate(config.engines)]
        names = [s.spec.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ConfigError(f"engines: names must be unique, got {names}")
        self._monitor: asyncio.Task[None] | None = None

    def _slot(self, index: int, spec: EngineSpec) -> EngineSlot:
        for model in spec.models:
            if model not in self.config.models:
                raise ConfigError(
                    f"engines[{index}] ({spec.name}).models names {model!r}, which is not under "
                    f"models: (known: {sorted(self.config.models)})"
                )
        if spec.kind == "local":
            return EngineSlot(LocalEngine(spec, self.manager))
        served = {
            m: spec.served_names.get(m) or served_model_name(self.config, m) for m in spec.models
        }
        managed = None
        if spec.launch is not None:
            model_spec = self.config.models[spec.models[0]]
            path = self.manager.source(model_spec) or self.config.expand_model_id(model_spec)
            argv, env = build_command(spec, path, served[spec.models[0]], model_spec.quantization)
            managed = ManagedEngine(spec, argv, env, self.manager, self.clock)
        return EngineSlot(OpenAIEngine(spec, served), managed=managed)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, monitor: bool = True) -> None:
        """Launch managed engines, probe every engine once, then keep probing in the background.

        A managed engine that fails to start is reported down, not fatal: requests fail over.
        """
        for slot in self.slots:
            if slot.managed is not None:
                try:
                    await slot.managed.start()
                except (EngineError, ZooError) as exc:
                    log.error("engine %s did not start: %s", slot.spec.name, exc)
                    slot.health.mark_down(self.clock(), str(exc))
        await self.probe_all()
        if monitor and self._monitor is None:
            self._monitor = asyncio.create_task(self._monitor_forever())

    async def close(self) -> None:
        await cancel_and_wait(self._monitor)
        self._monitor = None
        for slot in self.slots:
            if slot.managed is not None:
                await slot.managed.stop()
            await slot.engine.close()

    # --- requests ----------------------------------------------------------------------------

    def engines_for(self, model: str) -> list[EngineSlot]:
        return [s for s in self.slots if model in s.spec.models]

    def serves(self, model: str) -> bool:
        return bool(self.engines_for(model))

    def available(self, model: str) -> bool:
        """Some engine for the model is not known to be down."""
        now = self.clock()
        return any(
            not s.health.known_down(now, s.spec.health_interval_s) for s in self.engines_for(model)
        )

    def select_model(self, task: str, requested: str | None) -> str:
        """The request's model, else the task's `selected` one, else the first option with a
        usable engine. A requested model never falls back: its absence is the caller's error.
        A declared task that no engine serves is the server's: 503, like an engine down."""
        if requested is not None:
            self.manager.state(requested)  # ModelNotFound listing every model
            if not self.serves(requested):
                raise InvalidInput(
                    f"model {requested!r} is not served by any engine; list it under engines:",
                    {"model": requested, "served": sorted(self._served())},
                )
            return requested
        spec = self.config.tasks.get(task)  # type: ignore[call-overload]
        if spec is None:
            raise InvalidInput(f"task {task!r} is not configured; pass a model explicitly")
        served = [option for option in spec.options if self.serves(option)]
        if not served:
            raise NoEngineAvailable(
                f"no engine is configured for task {task!r}: no engine lists any of its models "
                "(the server's engines: config)",
                {"task": task, "options": list(spec.options), "failures": []},
                retry_after=30,
            )
        preferred = [spec.selected] if spec.selected in served else []
        for option in preferred + served:
            if self.available(option):
                if option != spec.selected:
                    log.warning(
                        "%s: %s has no usable engine, using %s", task, spec.selected, option
                    )
                return str(option)
        return str(preferred[0] if preferred else served[0])  # its engines will say why not

    def _served(self) -> set[str]:
        return {model for slot in self.slots for model in slot.spec.models}

    async def generate(self, request: GenerationRequest) -> Generation:
        """Ask the model's engines in priority order until one answers (module docstring)."""
        slots = self.engines_for(request.model)
        if not slots:
            raise InvalidInput(
                f"model {request.model!r} is not served by any engine",
                {
                    "model": request.model,
                    "engines": {s.spec.name: s.spec.models for s in self.slots},
                },
            )
        failures: list[EngineFailure] = []
        for slot in slots:
            health = slot.health
            # Skip a remote engine known to be down: dialling it again would only wait. Managed
            # engines are (re)started by their lease; local ones fail fast and precisely.
            remote = slot.managed is None and slot.spec.kind != "local"
            if remote and health.known_down(self.clock(), slot.spec.health_interval_s):
                failures.append(EngineFailure(slot.spec.name, f"down: {health.detail}"))
                continue
            health.requests += 1
            try:
                if slot.managed is not None:
                    async with slot.managed.lease():
                        generation = await slot.engine.generate(request)
                else:
                    generation = await slot.engine.generate(request)
            except EngineError as exc:
                failure = exc.failure
            except ZooError as exc:  # the ledger refused a wake-up or a launch
                failure = EngineFailure(
                    slot.spec.name, f"{exc.code}: {exc.message}", True, exc.status
                )
            else:
                health.mark_up(self.clock(), "answered a request", generation.seconds)
                generation.failures = failures
                return generation
            health.failures += 1
            if failure.retryable and slot.spec.kind != "local":
                health.mark_down(self.clock(), failure.reason)
            log.warning(
                "engine %s failed for %s: %s", failure.engine, request.model, failure.reason
            )
            failures.append(failure)
        raise self._all_failed(request.model, failures)

    @staticmethod
    def _all_failed(model: str, failures: list[EngineFailure]) -> ZooError:
        details: dict[str, Any] = {"model": model, "failures": [f.to_dict() for f in failures]}
        summary = "; ".join(f"{f.engine}: {f.reason}" for f in failures)
        if any(f.retryable and _overloaded(f) for f in failures):
            return ServiceBusy(
                f"no engine could serve {model!r} now: {summary}", details, retry_after=10
            )
        if not failures or any(f.retryable for f in failures):
            return NoEngineAvailable(
                f"no engine is available for {model!r}: "
                f"{summary or 'no engine is configured (engines: in the config)'}",
                details,
                retry_after=30,
            )
        for failure in failures:
            if failure.code in _FINAL_ERRORS:
                return _FINAL_ERRORS[failure.code](f"{model!r}: {summary}", details)
        return InvalidInput(f"every engine rejected the request for {model!r}: {summary}", details)

    # --- health and memory -------------------------------------------------------------------

    async def probe(self, slot: EngineSlot) -> None:
        now = self.clock()
        slot.next_probe_at = now + slot.spec.health_interval_s
        managed = slot.managed
        if managed is not None and (managed.process is None or managed.process.poll() is not None):
            slot.health.mark_down(now, f"process not running ({managed.state})")
            return
        started = time.perf_counter()
        try:
            detail = await slot.engine.probe()
        except EngineError as exc:
            slot.health.mark_down(self.clock(), exc.failure.reason)
        else:
            slot.health.mark_up(self.clock(), detail, time.perf_counter() - started)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(slot) for slot in self.slots))

    async def _monitor_forever(self, tick: float = 1.0) -> None:
        while True:
            await asyncio.sleep(tick)
            try:
                due = [s for s in self.slots if self.clock() >= s.next_probe_at]
                await asyncio.gather(*(self.probe(slot) for slot in due))
                for slot in self.slots:
                    if slot.managed is not None:
                        await slot.managed.sleep_if_idle()
            except Exception:
                log.exception("engine monitor failed")

    def engine_status(self) -> dict[str, dict[str, Any]]:
        """Per engine: kind, url, models, live health and (managed ones) process state.
        For /health and /models/info."""
        now = self.clock()
        status: dict[str, dict[str, Any]] = {}
        for priority, slot in enumerate(self.slots):
            spec = slot.spec
            status[spec.name] = {
                "priority": priority,
                "kind": spec.kind,
                "base_url": spec.base_url,
                "models": list(spec.models),
                **slot.health.to_dict(now),
                "managed": slot.managed.status() if slot.managed is not None else None,
            }
        return status

    def model_status(self, model: str) -> dict[str, Any]:
        """How a model is served: its engines in priority order and whether any is usable."""
        return {
            "engines": [s.spec.name for s in self.engines_for(model)],
            "engine_available": self.available(model),
        }


def _overloaded(failure: EngineFailure) -> bool:
    """Busy rather than absent: the engine answered 429/503 or did not answer in time."""
    reason = failure.reason.lower()
    return failure.status in (429, 503) or "timed out" in reason or "timeout" in reason
