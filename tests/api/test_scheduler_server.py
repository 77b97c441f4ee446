"""The scheduler of issue #10 against real `zooserve serve` subprocesses on 127.0.0.1: wrong
estimates never take /health's ledger over the budget, a load that fits does not wait behind a
blocked one, a full queue is a 429, a waiting request whose client leaves leaves the queue, and
an idle engine is put to sleep to make room. Servers, configs and sizes: scheduler_servers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api import scheduler_servers as fleet
from tests.api.scheduler_servers import claim, detect, holding_big, scheduler, wait_for
from zooserve.api.server import free_port
from zooserve.runtimes.memory import MB


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The three servers of this module, started together, and the engine one launches."""
    root = tmp_path_factory.mktemp("scheduler-server")
    media = root / "media"
    media.mkdir()
    held = fleet.write_config(root / "held.yaml", fleet.held_config(media))
    engine_port = free_port()
    configs = {
        "wrong": (fleet.write_config(root / "wrong.yaml", fleet.wrong_estimates_config(media)), {}),
        "held": (held, {"ZOOSERVE_MAX_PENDING": str(fleet.HELD_MAX_PENDING)}),
        "engine": (
            fleet.write_config(root / "engine.yaml", fleet.engine_config(media, engine_port)),
            {},
        ),
    }
    with ThreadPoolExecutor(1) as writer:
        written = writer.submit(fleet.write_media, media)  # encoded while the servers start
        with fleet.servers(configs) as started:
            written.result()
            yield {**started, "sleepy": f"http://127.0.0.1:{engine_port}"}


#: Events that end a load admitted by the estimate: loaded (its claim grown to the measure),
#: or measured above it with no room to grow, and unloaded again.
LOAD_OUTCOMES = ("load", "remeasured")


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=60)


# --- 1. wrong estimates -------------------------------------------------------------------


async def test_wrong_estimates_never_take_the_ledger_over_the_budget(
    urls: dict[str, str],
) -> None:
    """40 detections over four models estimated at 0.1 MB that measure 0.65-0.9 MB, eight at
    a time, in a budget that holds two: each load's claim grows to its measure (or the model
    is unloaded again) before anyone can use it."""
    names = list(fleet.WRONG_FILES)
    budget = fleet.WRONG_BUDGET_MB * MB
    seen: list[dict[str, Any]] = []  # /health's scheduler blocks
    resident: list[int] = []  # measured bytes of the models loaded, per /models/info
    done = asyncio.Event()

    async with client(urls["wrong"]) as http:

        async def watch() -> None:
            while not done.is_set():
                seen.append(await scheduler(http))
                info = (await http.get("/models/info", params={"events": 0})).json()["models"]
                resident.append(
                    sum(
                        round(m["memory_mb_measured"] * MB)
                        for m in info.values()
                        if m["status"] == "loaded"
                    )
                )

        gate = asyncio.Semaphore(8)

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await detect(http, names[i % len(names)])

        watcher = asyncio.create_task(watch())
        try:
            responses = await asyncio.gather(*(one(i) for i in range(40)))
        finally:
            done.set()
            await watcher
        final = await scheduler(http)
        report = (await http.get("/models/info", params={"events": 1000})).json()

    for response in responses:
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "service_busy", response.text
    assert sum(r.status_code == 200 for r in responses) >= 1
    # The estimates really were wrong: each model was first admitted by its 0.1 MB (then grew
    # its claim, or was unloaded again as "remeasured") and measured well above it.
    for name in names:
        first = next(
            e for e in report["events"] if e["model"] == name and e["kind"] in LOAD_OUTCOMES
        )
        estimated = first["details"].get("admitted_bytes") == int(0.1 * MB)
        assert first["kind"] == "remeasured" or estimated, first
        assert report["models"][name]["memory_mb_measured"] > 0.5, report["models"][name]
    assert seen and resident
    assert all(block["used_bytes"] <= block["budget_bytes"] == budget for block in seen), [
        b["used_bytes"] for b in seen if b["used_bytes"] > budget
    ]
    assert final["peak_used_bytes"] <= budget, final
    # The ledger tells the truth: what is loaded fits too, whatever was estimated.
    assert max(resident) <= budget, [r for r in resident if r > budget]


# --- 2-4. a busy model holds the room -----------------------------------------------------


async def test_a_load_that_fits_does_not_wait_behind_a_blocked_one(urls: dict[str, str]) -> None:
    finished: list[str] = []
    async with client(urls["held"]) as http:
        async with holding_big(http):
            blocked = asyncio.create_task(detect(http, "blocked"))
            blocked.add_done_callback(lambda _: finished.append("blocked"))
            await wait_for(http, "blocked queued", lambda s: s["pending"] == 1)
            small = await detect(http, "small")
            finished.append("small")
            assert small.status_code == 200, small.text
            after = await scheduler(http)
            assert after["pending"] == 1 and not blocked.done(), after
            assert claim(after, "model:blocked") is None and claim(after, "model:small")
            held = claim(after, "model:big")
            assert held is not None and held["busy"], after  # the hold is still on
        # The stream closed: `big` is free to go, and the blocked request gets its room.
        response = await asyncio.wait_for(blocked, 60)
    assert response.status_code == 200, response.text
    assert finished == ["small", "blocked"]


async def test_a_full_queue_is_a_429_with_retry_after(urls: dict[str, str]) -> None:
    async with client(urls["held"]) as http:
        async with holding_big(http):
            full = fleet.HELD_MAX_PENDING
            waiting = [asyncio.create_task(detect(http, "blocked")) for _ in range(full)]
            before = await wait_for(http, "a full queue", lambda s: s["pending"] == full)
            assert before["max_pending"] == full
            refused = await detect(http, "blocked")
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            error = refused.json()["error"]
            assert error["code"] == "queue_full", error
            assert error["details"]["max_pending"] == full, error
            after = await scheduler(http)
            assert after["pending"] == full and not any(t.done() for t in waiting), after
            assert after["refused_queue_full"] == before["refused_queue_full"] + 1
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 60)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]


async def test_a_full_queue_does_not_refuse_a_request_that_needs_no_room(
    urls: dict[str, str],
) -> None:
    async with client(urls["held"]) as http:
        async with holding_big(http):
            loaded = await detect(http, "small")  # fits beside `big`; idle from now on
            assert loaded.status_code == 200, loaded.text
            full = fleet.HELD_MAX_PENDING
            waiting = [asyncio.create_task(detect(http, "blocked")) for _ in range(full)]
            await wait_for(http, "a full queue", lambda s: s["pending"] == full)
            response = await detect(http, "small")
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 60)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert response.status_code == 200, response.text


async def test_a_waiting_request_whose_client_leaves_leaves_the_queue(
    urls: dict[str, str],
) -> None:
    async with client(urls["held"]) as http:
        async with holding_big(http):
            async with client(urls["held"]) as leaving:
                request = asyncio.create_task(detect(leaving, "blocked"))
                await wait_for(http, "blocked queued", lambda s: s["pending"] == 1)
                request.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await request
            # The client went away: its connection is closed, its request still queued.
            # admission_timeout_s is 120: only the client's absence can end its wait now.
            after = await wait_for(http, "the queue emptied", lambda s: s["pending"] == 0)
            held = claim(after, "model:big")
            assert held is not None and held["busy"], after  # not admitted: still no room
            assert claim(after, "model:blocked") is None, after
        # Nothing was left behind: the model is admitted for the next caller.
        response = await detect(http, "blocked")
    assert response.status_code == 200, response.text


# --- 5. an idle engine sleeps ----------------------------------------------------------------


async def test_an_idle_engine_is_put_to_sleep_to_make_room(urls: dict[str, str]) -> None:
    async with client(urls["engine"]) as http:
        health = (await http.get("/health")).json()
        engine = health["engines"]["sleepy"]
        assert engine["managed"]["state"] == "awake", engine
        awake = claim(health["scheduler"], "engine:sleepy")
        assert awake is not None and awake["bytes"] == int(fleet.ENGINE_MB * MB), health
        assert awake["reclaim"] == "sleep" and not awake["busy"], awake
        sleepy_url = f"{urls['sleepy']}/stats"  # the engine's own record of its calls
        assert httpx.get(sleepy_url).json()["sleeps"] == 0

        response = await detect(http, "blocked")
        assert response.status_code == 200, response.text

        health = (await http.get("/health")).json()
        assert health["engines"]["sleepy"]["managed"]["state"] == "asleep", health["engines"]
        asleep = claim(health["scheduler"], "engine:sleepy")
        assert asleep is not None and asleep["bytes"] == int(fleet.ENGINE_ASLEEP_MB * MB), asleep
        assert claim(health["scheduler"], "model:blocked") is not None
        assert health["scheduler"]["peak_used_bytes"] <= health["scheduler"]["budget_bytes"]
    stats = httpx.get(sleepy_url).json()
    assert stats["sleeps"] == 1 and stats["asleep"] is True, stats
    assert stats["last"] == "/sleep level=1", stats
