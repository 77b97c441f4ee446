"""Parking in the host tier when it goes wrong, and how parked weights are laid out.

No GPU here: the manager runs on the CPU with an injected mover standing in for the device
copies (it raises as pinning does when host memory is short, or packs into plain memory instead
of page-locked), an injected CUDA probe where the CUDA rule is tested, and the packing is
checked with an injected host allocator."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch

from tests.manager.sized import SizedModel, lease_once, model
from tests.test_memory_shared_device import LANE_BYTES, SharedDevice
from zooserve.catalog import Config
from zooserve.core.events import Event
from zooserve.manager import ModelManager
from zooserve.manager.tiers import ALIGN, Mover, pack_to_host
from zooserve.runtimes.memory import MB, MemoryProbe


def packing_mover(modules: Sequence[torch.nn.Module], device: str) -> int | None:
    """Moves weights as the real mover does (into one new host allocation, see
    `pack_to_host`), in plain memory: no GPU here, so no page-locked host memory."""
    if device == "cpu":
        return pack_to_host(modules, lambda nbytes: torch.empty(nbytes, dtype=torch.uint8))
    return None


def parking_manager(
    tmp_path: Path,
    models: dict[str, dict],
    fail: bool,
    *,
    mover: Mover | None = None,
    probe: MemoryProbe | None = None,
    adapter: type[SizedModel] = SizedModel,
) -> ModelManager:
    """Room for one 2 MB model on the "device", 10 MB of host tier; `fail`: every park raises."""

    def failing(modules: Sequence[torch.nn.Module], device: str) -> int | None:
        if fail and device == "cpu":
            raise RuntimeError("CUDA error: out of memory (pinning; injected, no GPU here)")
        return None

    specs = {n: {"model_id": str(tmp_path), "family": "sized", **s} for n, s in models.items()}
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 3,
            "host_memory_budget_mb": 10,
            "admission_timeout_s": 2,
            "models": specs,
            "base_dir": tmp_path,
        }
    )
    SizedModel.loads = []
    return ModelManager(
        config,
        adapter_factory=lambda spec, src, dev: adapter(spec, src, dev),
        host_mover=mover or failing,
        probe=probe,
    )


class HeldElsewhere(SizedModel):
    """Keeps a second tensor on its weights' storage, outside its modules (as an adapter's
    cache might): moving its modules cannot free that storage."""

    def load(self) -> None:
        super().load()
        self.cached_weight = self.model.weight.detach()


def park_events(manager: ModelManager, name: str) -> list[Event]:
    return [e for e in manager.events.recent() if e.model == name and e.kind == "evict"]


async def test_a_park_reports_the_bytes_it_freed_not_the_bytes_expected(tmp_path: Path) -> None:
    manager = parking_manager(tmp_path, {"a": model(2), "b": model(2)}, False, mover=packing_mover)
    await lease_once(manager, "a")
    await lease_once(manager, "b")  # evicts "a": parked, its weights copied into a new buffer
    parked = park_events(manager, "a")[-1].details
    assert parked["tier"] == "host" and parked["recovered_bytes"] == 2 * MB
    kept = parking_manager(
        tmp_path, {"a": model(2), "b": model(2)}, False, mover=packing_mover, adapter=HeldElsewhere
    )
    await lease_once(kept, "a")
    await lease_once(kept, "b")  # on the CPU the park stands; it freed nothing
    parked = park_events(kept, "a")[-1].details
    assert (parked["recovered_bytes"], parked["expected_bytes"]) == (0, 2 * MB)  # before: 2 MB
    await manager.close()
    await kept.close()


async def test_on_cuda_a_park_is_judged_by_its_storages_not_by_other_lanes(
    tmp_path: Path,
) -> None:
    """`SharedDevice` is an injected CUDA probe whose allocator figure another lane moves by
    300 MB between two reads: up (a device-wide before/after would reject a good park) or
    down (it would accept a park that left the weights on the device)."""
    allocating = SharedDevice(lane=+LANE_BYTES)
    manager = parking_manager(
        tmp_path, {"a": model(2), "b": model(2)}, False, mover=packing_mover, probe=allocating
    )
    await lease_once(manager, "a")
    await lease_once(manager, "b")
    assert manager.model_info("a")["tier"] == "host"
    assert park_events(manager, "a")[-1].details["recovered_bytes"] == 2 * MB
    await manager.close()

    freeing = SharedDevice(lane=-LANE_BYTES)
    kept = parking_manager(
        tmp_path,
        {"a": model(2), "b": model(2)},
        False,
        mover=packing_mover,
        probe=freeing,
        adapter=HeldElsewhere,
    )
    await lease_once(kept, "a")
    await lease_once(kept, "b")  # the park left a's storage on the device: unloaded instead
    assert kept.model_info("a")["tier"] == "disk" and kept.host_tier.used_bytes == 0
    evicted = park_events(kept, "a")[-1].details
    assert "tier" not in evicted and evicted["verified"] is True  # the unload freed it
    await kept.close()


async def test_a_park_that_raises_unloads_the_model_for_real_and_verifies_it(
    tmp_path: Path,
) -> None:
    manager = parking_manager(tmp_path, {"a": model(2), "b": model(2)}, fail=True)
    await lease_once(manager, "a")
    adapter = manager.state("a").adapter
    assert isinstance(adapter, SizedModel)
    weights = weakref.ref(adapter.model)
    del adapter
    await lease_once(manager, "b")  # evicts "a": the park raises
    gc.collect()
    assert weights() is None  # not left on the device while the ledger dropped its claim
    info = manager.model_info("a")
    assert info["tier"] == "disk" and manager.host_tier.used_bytes == 0
    evicted = [e for e in manager.events.recent() if e.model == "a" and e.kind == "evict"]
    assert evicted and evicted[-1].details["verified"] is True
    assert evicted[-1].details["recovered_bytes"] == 2 * MB
    assert manager.model_info("b")["status"] == "loaded"
    await manager.close()


async def test_quantized_models_never_park(tmp_path: Path) -> None:
    manager = parking_manager(
        tmp_path, {"a": model(2, quantization="8bit"), "b": model(2)}, fail=False
    )
    await lease_once(manager, "a")
    assert not manager.host_tier.can_park(manager.state("a").adapter, 2 * MB)  # type: ignore[arg-type]
    await lease_once(manager, "b")  # evicts "a": to disk, not to the host tier
    assert manager.model_info("a")["tier"] == "disk" and manager.host_tier.used_bytes == 0
    await manager.close()


def test_parked_weights_are_one_host_allocation_with_every_tensor_a_view() -> None:
    torch.manual_seed(0)
    first, last = torch.nn.Linear(7, 5), torch.nn.Linear(5, 7)
    last.weight = torch.nn.Parameter(first.weight.t())  # a tied, non-contiguous view
    net = torch.nn.Sequential(first, torch.nn.BatchNorm1d(5), last)
    before = {name: t.clone() for name, t in net.state_dict().items()}
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in net.state_dict().values()
    }
    assert len(storages) == 8  # 9 tensors, two of them one tied storage
    allocations: list[torch.Tensor] = []

    def allocate(nbytes: int) -> torch.Tensor:  # page-locked on CUDA; plain memory here
        allocations.append(torch.empty(nbytes, dtype=torch.uint8))
        return allocations[-1]

    total = pack_to_host([net], allocate)

    assert len(allocations) == 1 and allocations[0].numel() == total
    host = allocations[0].untyped_storage().data_ptr()
    tensors = [*net.parameters(), *net.buffers()]
    assert all(t.untyped_storage().data_ptr() == host for t in tensors)
    assert total == sum(-(-nbytes // ALIGN) * ALIGN for nbytes in storages.values())
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert last.weight.data_ptr() == first.weight.data_ptr()  # still tied
    assert torch.equal(net(torch.ones(2, 7)), net(torch.ones(2, 7)))


def test_packing_keeps_a_module_usable_after_the_copy() -> None:
    layer = torch.nn.Linear(3, 2)
    expected = layer(torch.ones(1, 3))
    pack_to_host([layer], lambda n: torch.empty(n, dtype=torch.uint8))
    assert torch.equal(layer(torch.ones(1, 3)), expected)
