"""Job storage is bounded by count and age, not by uptime: finished jobs beyond `keep` (or
older than `max_age_s`) leave memory and SQLite while the runner runs and at start-up; queued
and running jobs never do; results stay in SQLite and are read when a caller asks. Real SQLite;
the waits are on conditions, never on durations."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import until
from zooserve.jobs.queue import Job, JobNotFound, JobRunner, JobStore, Progress, expired


def stored_ids(store: JobStore) -> set[str]:
    return {job.id for job in store.load_all()}


async def echo(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
    return {"n": body["n"], "payload": "x" * 1000}


async def run_one(runner: JobRunner, n: int) -> Job:
    job = await runner.submit("echo", {"n": n})
    await until(lambda: job.status == "succeeded", f"job {n} finished")
    return job


async def test_finished_jobs_beyond_keep_leave_memory_and_sqlite_while_running(
    tmp_path: Path,
) -> None:
    held: list[int] = []  # the dict's size each time a job starts

    async def counting(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        held.append(len(runner.jobs))
        return await echo(body, progress)

    store = JobStore(tmp_path / "jobs.sqlite3")
    runner = JobRunner(store, {"echo": counting}, max_queued=10, keep=3)
    await runner.start()
    jobs = [await run_one(runner, n) for n in range(12)]
    newest = {job.id for job in jobs[-3:]}
    await until(lambda: set(runner.jobs) == newest, "the 3 newest kept in memory")
    await until(lambda: stored_ids(store) == newest, "the 3 newest kept in SQLite")
    assert max(held) <= 3 + 1  # kept finished jobs + the one running, however many ran
    assert all(job.result is None and job.body == {} for job in runner.jobs.values())
    assert runner.get(jobs[-1].id).to_dict()["result"] == {"n": 11, "payload": "x" * 1000}
    with pytest.raises(JobNotFound) as pruned:
        runner.get(jobs[0].id)
    assert pruned.value.status == 404 and "pruned" in pruned.value.message
    assert pruned.value.details["jobs_keep"] == 3
    await runner.close()


async def test_running_and_queued_jobs_are_never_pruned(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def blocking(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        await release.wait()
        return {"n": body["n"]}

    store = JobStore(tmp_path / "jobs.sqlite3")
    runner = JobRunner(store, {"echo": blocking}, max_queued=10, workers=1, keep=1)
    await runner.start()
    running = await runner.submit("echo", {"n": 0})
    await until(lambda: running.status == "running", "the first job runs")
    first, second, waiting = [await runner.submit("echo", {"n": n}) for n in (1, 2, 3)]
    await runner.cancel(first.id)
    await runner.cancel(second.id)  # two finished jobs, keep=1: the older one goes
    assert set(runner.jobs) == {running.id, second.id, waiting.id}
    assert stored_ids(store) == {running.id, second.id, waiting.id}
    release.set()
    await until(lambda: waiting.status == "succeeded", "the queued job ran")
    await until(lambda: set(runner.jobs) == {waiting.id}, "only the newest finished is kept")
    await runner.close()


async def test_restart_prunes_by_count_and_age_and_reads_results_lazily(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    before = JobRunner(store, {"echo": echo}, max_queued=10, keep=100)
    await before.start()
    jobs = [await run_one(before, n) for n in range(5)]
    await before.close()
    now = time.time()
    old = Job(id="old", task="echo", body={"n": -1}, status="succeeded", result={"n": -1})
    old.created_at, old.finished_at = now - 2000, now - 1000
    store.save(old)
    store.save(Job(id="interrupted", task="echo", body={"n": 9}, status="running"))

    after = JobRunner(JobStore(path), {"echo": echo}, max_queued=10, keep=3, max_age_s=500)
    await after.start()
    kept = {"interrupted", jobs[3].id, jobs[4].id}  # the 3 most recently finished
    assert set(after.jobs) == kept and stored_ids(store) == kept
    assert after.get("interrupted").error["code"] == "interrupted"  # type: ignore[index]
    restored = after.get(jobs[4].id)
    assert restored.result is None and restored.body == {}  # start-up read metadata only
    assert restored.to_dict()["result"] == {"n": 4, "payload": "x" * 1000}
    for gone in ("old", jobs[0].id):
        with pytest.raises(JobNotFound):
            after.get(gone)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 3
    await after.close()


@pytest.mark.parametrize(
    ("ended", "keep", "max_age_s", "gone"),
    [
        ([1, 2, 3], 5, 100, []),
        ([1, 2, 3], 2, 100, ["a"]),  # the least recently finished
        ([3, 2, 1], 2, 100, ["c"]),
        ([1, 50, 90], 5, 40, ["a", "b"]),  # finished more than 40 s before now=100
        ([1, 2, 3], 1, 1.5, ["a", "b", "c"]),
    ],
)
def test_expired_keeps_the_most_recently_finished(
    ended: list[float], keep: int, max_age_s: float, gone: list[str]
) -> None:
    jobs = [
        Job(id=name, task="t", body={}, status="succeeded", created_at=0, finished_at=at)
        for name, at in zip("abc", ended, strict=True)
    ]
    jobs += [
        Job(id="queued", task="t", body={}, status="queued", created_at=0),
        Job(id="running", task="t", body={}, status="running", created_at=0),
    ]
    assert sorted(expired(jobs, keep, max_age_s, now=100)) == gone
