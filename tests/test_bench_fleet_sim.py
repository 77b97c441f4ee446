"""bench/fleet_sim.py: the simulator's invariants on small traces, a scenario checked by hand,
its report, and its copy of zooserve's admission rules against the real ones."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.bench_scripts import load_bench
from zooserve.catalog import load_config

fleet = load_bench("fleet_sim")
CONFIG = Path(__file__).resolve().parents[1] / "config" / "models.yaml"


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    return fleet.fleet_models(load_config(CONFIG))


def test_the_fleet_is_the_zoo_the_detectors_and_the_trackers(models: dict) -> None:
    kinds = {m.kind for m in models.values()}
    assert kinds == {"zoo", "detector", "tracker", "concept"}
    assert models["sam3-video"].kind == "concept"  # SAM 3 finds its own objects: no detector
    assert models["owlv2-base"].kind == "detector" and models["sam2.1-large"].kind == "tracker"
    assert models["vit-age-classifier"].kind == "zoo"
    assert "owlv2-bytetrack" not in models  # no weights of its own
    assert sum(m.mb for m in models.values()) > fleet.GPU_MB  # the working set does not fit


@pytest.mark.parametrize("replicas", [1, 4])
@pytest.mark.parametrize("policy", fleet.POLICIES)
def test_every_request_ends_once_and_memory_stays_within_limits(
    models: dict, policy: str, replicas: int
) -> None:
    # A 4 GiB GPU (3,686 MB budget) so that models churn.
    # 8 GiB: the zoo holds SAM 3 (~3.4 GB), which cannot sit beside a tracker on 4 GiB.
    sim, trace = fleet.simulate(models, policy, replicas, 600, seed=3, gpu_mb=8192)
    assert sorted(sim.outcome) == [r.id for r in trace]
    if policy.startswith("zooserve"):
        assert set(sim.outcome.values()) == {"served"}
    elif "failed" in sim.outcome.values():
        assert sim.oom_times  # only a load out of memory fails a request
    touched = {m for r in trace if sim.outcome[r.id] == "served" for m in r.models}
    loads, wakes = len(sim.load_times), len(sim.wake_times)
    assert loads + wakes == sum(r.loads for r in sim.replicas)
    assert loads >= len(touched)  # each model's first time on a GPU is from disk
    assert wakes == 0 or policy == "zooserve-host"
    for replica in sim.replicas:
        assert replica.loads >= len(replica.served_models)
        assert replica.peak_used <= sim.budget  # what was ever allocated at once
        assert replica.ongoing == 0 and replica.used >= 0
        if policy.startswith("ray"):
            assert replica.peak_count <= sim.cap
    assert sim.evictions + len(sim.oom_times) > 0  # the budget was tight enough to matter


def _scenario(policy: str) -> Any:
    """A 6 GB model, then a 5 GB one (9,216 MB budget), then a small one, then the 5 GB again."""
    models = {
        name: fleet.Model(name, "zoo", mb, load_s=1.0, service_s=0.1)
        for name, mb in (("big", 6000.0), ("large", 5000.0), ("small", 100.0))
    }
    plans = ["big", "large", "small", "large"]
    trace = [fleet.Request(i, 10.0 * i, (name,), 0.1) for i, name in enumerate(plans)]
    sim = fleet.Sim(models, policy, 1, 9216.0, seed=1, keep_alive_s=300.0, max_wait_s=1.0)
    sim.run(trace)
    return sim


def test_count_lru_runs_out_of_memory_where_bytes_evict() -> None:
    ray = _scenario("ray-lru-mean")
    assert ray.cap == 2  # 9,216 MB // the mean model (3,700 MB)
    # "large" next to "big": one model of two held, so nothing is evicted and the load fails,
    # three tries in all; once "small" fills the count, the LRU ("big") goes and "large" fits.
    assert ray.outcome == {0: "served", 1: "failed", 2: "served", 3: "served"}
    assert len(ray.oom_times) == 3 and ray.evictions == 1
    zoo = _scenario("zooserve")
    assert set(zoo.outcome.values()) == {"served"}
    assert len(zoo.load_times) == 3 and zoo.evictions == 1  # "big" made room for "large"
    assert zoo.hit == {0: False, 1: False, 2: False, 3: True}


def test_the_report_has_every_policy_for_each_n() -> None:
    report = fleet.run(300, seed=2, replica_counts=fleet.REPLICAS)
    pairs = [(row["replicas"], row["policy"]) for row in report["rows"]]
    assert pairs == [(n, p) for n in fleet.REPLICAS for p in fleet.POLICIES]
    table = fleet.markdown(report["rows"])
    for n in fleet.REPLICAS:
        for label in fleet._LABELS.values():
            prefix = label.split("{")[0]
            assert any(line.startswith(f"| {n} | {prefix}") for line in table.splitlines())
    # seeded: the same figures every time
    again = fleet.run(300, seed=2, replica_counts=(4,))
    assert again["rows"] == report["rows"][len(fleet.POLICIES) : 2 * len(fleet.POLICIES)]


def test_its_admission_rules_are_zooservers() -> None:
    from zooserve.manager.claims import Reclaim
    from zooserve.manager.policy import Candidate, decide

    rng = random.Random(5)
    for _ in range(400):
        rows = [
            (
                f"model:{i}",
                rng.choice([50, 100, 400, 1600]),
                rng.random() < 0.2,
                rng.choice([1.0, 2.0, 3.0]),
                rng.choice([0.3, 0.6, 1.4]),
                rng.random() < 0.4,
            )
            for i in range(rng.randrange(0, 6))
        ]
        need, free = rng.choice([0, 100, 500, 2000, 5000]), rng.choice([0, 300])
        ceiling, overdue = rng.choice([4000, 9000]), rng.random() < 0.5
        real = decide(
            need,
            free,
            0,
            [Candidate(k, b, Reclaim.EVICT, e, u, s, d) for k, b, e, u, s, d in rows],
            ceiling,
            overdue,
        )
        mine = fleet.decide(need, free, [fleet.Candidate(*row) for row in rows], ceiling, overdue)
        assert (str(real.verdict), [v.key for v in real.victims], real.deferred) == (
            mine[0],
            [v.key for v in mine[1]],
            mine[2],
        )
