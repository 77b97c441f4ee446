"""What the manager tells callers: availability, per-model info, the ledger and the queue.
Responses never show absolute server paths (see `public_text`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zooserve.catalog import Config, ModelSpec
from zooserve.core.errors import ModelNotFound
from zooserve.families import sources
from zooserve.manager.claims import Ledger
from zooserve.manager.scheduler import Scheduler
from zooserve.manager.state import ModelState, Status
from zooserve.manager.tiers import HostTier
from zooserve.runtimes.memory import MB

#: An absolute path in free text (not a URL's): shown as `…/<last part>`.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")


class PublicText:
    """Free text (errors, model ids) as callers may see it: this server's directories
    replaced by the names callers know them by, other absolute paths cut to their last part."""

    def __init__(self, config: Config) -> None:
        # Server directories, as written and as resolved.
        self._names = [
            (str(form), name)
            for path, name in (
                (config.resolve_path(config.model_zoo_path), "{MODEL_ZOO_PATH}"),
                (config.media_dir, "{media_root}"),
            )
            for form in (Path(path).resolve(), path)
        ]

    def __call__(self, text: str) -> str:
        for path, name in self._names:
            text = text.replace(path, name)
        return _ABSOLUTE_PATH.sub(r"…/\1", text)


class Reports:
    """Read-only views for the API: availability, per-model info, the ledger and the queue."""

    def __init__(
        self,
        config: Config,
        states: dict[str, ModelState],
        ledger: Ledger,
        scheduler: Scheduler,
        host_tier: HostTier,
        clock: Callable[[], float],
        *,
        any_family: bool = False,
    ) -> None:
        self.config = config
        #: True under a custom adapter factory (it may serve families the registry does not
        #: list): then the files alone decide availability.
        self.any_family = any_family
        self.states = states
        self.ledger = ledger
        self.scheduler = scheduler
        self.host_tier = host_tier
        self.clock = clock
        self.public_text = PublicText(config)

    def state(self, name: str) -> ModelState:
        state = self.states.get(name)
        if state is None:
            raise ModelNotFound(
                f"unknown model {name!r}", {"available_models": sorted(self.states)}
            )
        return state

    def source(self, spec: ModelSpec) -> str | None:
        return sources.locate(self.config, spec)

    def available(self, name: str) -> bool:
        """Servable here (sources.available: the rule `zooserve models list` shares)."""
        return sources.available(self.config, self.state(name).spec, self.any_family)

    def _tier(self, state: ModelState) -> str:
        """Where its weights are: on the device, parked in host memory, or on disk."""
        if state.status in (Status.LOADED, Status.LOADING, Status.UNLOADING):
            return "device"
        return "host" if self.host_tier.holds(state.name) else "disk"

    def loaded_models(self) -> list[str]:
        return [n for n, s in self.states.items() if s.status is Status.LOADED]

    def scheduler_status(self) -> dict[str, Any]:
        """The admission queue and the ledger, for /health."""
        return {
            "pending": self.scheduler.pending,
            "max_pending": self.scheduler.max_pending,
            "admitted": self.scheduler.admitted,
            "refused_queue_full": self.scheduler.refused_full,
            "used_bytes": self.ledger.used_bytes(),
            "peak_used_bytes": self.ledger.peak_used_bytes,
            "budget_bytes": self.ledger.budget_bytes,
            "host_tier": {
                "used_bytes": self.host_tier.used_bytes,
                "budget_bytes": self.host_tier.budget_bytes,
                "models": self.host_tier.names(),
            },
            "claims": [
                {
                    "key": c.key,
                    "bytes": c.nbytes,
                    "reclaim": c.reclaim.value,
                    "busy": c.busy(),
                    "reclaiming": c.reclaiming,
                }
                for c in self.ledger
            ],
        }

    def model_info(self, name: str) -> dict[str, Any]:
        state = self.state(name)
        spec = state.spec
        source = self.source(spec)
        expires = None
        if state.idle and not state.pinned:
            expires = max(0.0, state.keep_alive - (self.clock() - state.last_used))
        claim = self.ledger.get(state.key)
        info: dict[str, Any] = {
            "status": state.status.value,
            "category": spec.category,
            "family": sources.infer_family(self.config, spec, source),
            "framework": spec.framework,
            "model_id": self.public_text(spec.model_id),
            "enabled": spec.enabled,
            "available": self.available(name),
            "vram_mb_estimate": spec.vram_mb,
            "memory_mb_measured": None
            if state.measured_bytes is None
            else state.measured_bytes / MB,
            "peak_mb_measured": None
            if state.measured_peak_bytes is None
            else state.measured_peak_bytes / MB,
            "claim_mb": claim.nbytes / MB if claim else None,
            "load_count": state.load_count,
            "last_load_seconds": state.last_load_seconds,
            "tier": self._tier(state),
            "wake_count": state.wake_count,
            "last_wake_seconds": state.last_wake_seconds,
            "in_use": state.refcount,
            "pinned": state.pinned,
            "keep_alive_seconds": state.keep_alive,
            "expires_in_seconds": expires,
            "last_error": state.last_error,
        }
        if source is None and spec.enabled:
            info["fetch_with"] = sources.pull_command(spec)
        return info
