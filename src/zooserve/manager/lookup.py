"""Before a model queues: can it load here at all, and about how big is it.

Done once per request, off the event loop (locating and estimating read the disk; a
config-only estimate builds the model on the meta device), so admission, which runs on every
change of state, reads no files.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from zooserve.catalog import Config, ModelSpec
from zooserve.core.errors import ModelLoadFailed, ModelUnavailable, ZooError
from zooserve.families import adapter_class, sources
from zooserve.families.base import UNKNOWN_SIZE_BYTES
from zooserve.manager.state import ModelState, Status
from zooserve.runtimes.memory import MB


async def prepare(config: Config, device: str, state: ModelState) -> None:
    """Check `state`'s model can be loaded here (enabled, weights on this machine, a known
    family) and estimate its size, or raise the caller-facing error. A loaded model was
    prepared already."""
    if state.status is Status.LOADED and state.estimate is not None:
        return
    source, family, estimate = await asyncio.to_thread(look_up, config, device, state.spec)
    state.spec.family, state.source, state.estimate = family, source, estimate


def look_up(config: Config, device: str, spec: ModelSpec) -> tuple[str, str, int]:
    """(weights source, family, estimated bytes) of `spec`, or the error to answer."""
    if not spec.enabled:
        raise ModelUnavailable(f"model {spec.name!r} is disabled in the config")
    source = sources.locate(config, spec)
    if source is None:
        raise ModelUnavailable(
            f"model {spec.name!r} is not present on this machine "
            f"(offline: nothing is downloaded during a request)",
            {"model_id": spec.model_id, "fetch_with": sources.pull_command(spec)},
        )
    family = sources.infer_family(config, spec, source)
    if family is None:
        raise ModelLoadFailed(
            f"cannot tell the family of {spec.name!r}: set models.{spec.name}.family",
            {"source": Path(source).name},
        )
    return source, family, estimate_bytes(device, spec, family, source)


def estimate_bytes(device: str, spec: ModelSpec, family: str, source: str) -> int:
    """The config's vram_mb, else the family's estimate from the weights or the model's
    config, else UNKNOWN_SIZE_BYTES (never 0: a model is never admitted for free)."""
    if spec.vram_mb is not None:
        return int(spec.vram_mb * MB)
    with contextlib.suppress(ZooError, ImportError):
        estimate = adapter_class(family).estimate_bytes(source, device)
        if estimate is not None:
            return estimate
    return UNKNOWN_SIZE_BYTES
