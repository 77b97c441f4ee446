"""Physical memory during a load whose real size is unknown (issue #18 item 5): its memory
exists before it can be measured, so with estimates eight times too low a load must not start
beside memory it may need. Counted by the live tensor bytes of real torch modules (on a GPU,
going over would be an out-of-memory error; here it is only counted)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.manager.sized import (
    LiveTensors,
    SizedModel,
    TrackedModel,
    lease_once,
    make_manager,
    model,
)
from zooserve.catalog import ModelSpec
from zooserve.manager.admission import LedgerAdmission
from zooserve.manager.scheduler import Ticket
from zooserve.runtimes.memory import MB


def tracked(live: LiveTensors) -> Callable[[ModelSpec, str, str], TrackedModel]:
    """An adapter factory whose models count their tensors in `live`."""

    def build(spec: ModelSpec, source: str, device: str) -> TrackedModel:
        adapter = TrackedModel(spec, source, device)
        adapter.live = live
        return adapter

    return build


@pytest.mark.parametrize("rounds", [1, 3])
async def test_estimates_eight_times_too_low_never_hold_more_than_the_budget(
    tmp_path: Path, rounds: int
) -> None:
    """Room for two 4 MB models (budget 10 MB), three estimated at 0.5 MB, all asked for at
    once: before, all three were admitted at 0.5 MB and loaded one after another, the third
    on top of two (12 MB) until it was measured."""
    real, budget = 4, 10
    models = {name: model(real, vram_mb=real / 8) for name in ("a", "b", "c")}
    manager = make_manager(tmp_path, budget, models, timeout=10)
    live = LiveTensors(manager.budget_bytes)
    manager.loader.adapter_factory = tracked(live)
    for _ in range(rounds):
        await asyncio.wait_for(
            asyncio.gather(*(lease_once(manager, n) for n in ("a", "b", "c", "a", "c"))), 20
        )
    assert live.peak <= manager.budget_bytes, f"{live.peak / MB:.1f} MB alive at once"
    assert live.peak >= 2 * real * MB  # two fit and were held together
    assert manager.ledger.peak_used_bytes <= manager.budget_bytes
    await manager.close()


async def test_a_never_measured_model_is_admitted_by_its_familys_worst_under_estimate(
    tmp_path: Path,
) -> None:
    """One model of the family measured 8x its estimate: a sibling never loaded is admitted
    at 8x its own estimate, not at the estimate, nor at the sibling's (larger) size."""
    models = {"big": model(4, vram_mb=0.5), "small": model(2, vram_mb=0.25)}
    manager = make_manager(tmp_path, 10, models)
    admission = manager.scheduler.admission
    assert isinstance(admission, LedgerAdmission)
    small = manager.state("small")
    await lease_once(manager, "big")
    small.estimate = int(0.25 * MB)  # what `prepare` sets before it queues
    sizes = admission.load_sizes(Ticket("small", models=("small",)))
    assert sizes["small"] == pytest.approx(2 * MB, rel=0.01)
    await lease_once(manager, "small")
    assert SizedModel.loads == ["big", "small"]
    await manager.close()
