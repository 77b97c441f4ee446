"""The job runner's races: cancel at every step of a job's life, progress from a
thread that outlives its job, concurrent submits against the queue bound, and the order in
which SQLite sees a job's rows. Real SQLite (JobStore); `SlowDisk` holds chosen writes on a
threading gate so an interleaving is deterministic rather than timed."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

from tests.waiting import until
from zooserve.jobs.queue import Job, JobRunner, JobStore, Progress, QueueFull


class SlowDisk(JobStore):
    """Real SQLite; a write of a job in status `hold` reads the job, then waits for `gate`
    before it reaches the disk (a slow disk). `written` lists statuses in disk order."""

    def __init__(self, path: Path, hold: str | None = None) -> None:
        super().__init__(path)
        self.hold = hold
        self.gate = threading.Event()
        self.holding = threading.Event()  # a held write has started and waits on the gate
        self.written: list[str] = []

    def save(self, job: Job) -> None:
        row = dataclasses.replace(job)
        if row.status == self.hold:
            self.holding.set()
            self.gate.wait(timeout=10)
        super().save(row)
        self.written.append(row.status)


async def never_ends(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


def stored_status(store: JobStore, job_id: str) -> str:
    return {job.id: job.status for job in store.load_all()}[job_id]


async def test_a_job_cancelled_while_queued_never_runs(tmp_path: Path) -> None:
    ran: list[dict[str, Any]] = []

    async def record(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        ran.append(body)
        return {}

    store = JobStore(tmp_path / "jobs.sqlite3")
    runner = JobRunner(store, {"record": record}, max_queued=10)
    await runner.start()
    cancelled = await runner.submit("record", {"n": 1})
    await runner.cancel(cancelled.id)  # while its cancellation is written, the worker is free
    later = await runner.submit("record", {"n": 2})
    await until(lambda: later.status == "succeeded", "the later job ran")
    assert ran == [{"n": 2}]
    assert cancelled.status == "cancelled" and stored_status(store, cancelled.id) == "cancelled"
    await runner.close()


async def test_a_job_cancelled_as_it_starts_ends_cancelled_in_memory_and_on_disk(
    tmp_path: Path,
) -> None:
    """The cancel lands while the job's "running" row is being written (before its task ran).
    The job must end "cancelled", and the slow "running" write must not land after it. The
    cancel waits until the write is on the disk thread: a cancel before the writer picked it
    up withdraws the write altogether (another interleaving, which a busy CI machine hit)."""
    store = SlowDisk(tmp_path / "jobs.sqlite3", hold="running")
    runner = JobRunner(store, {"wait": never_ends}, max_queued=10)
    await runner.start()
    job = await runner.submit("wait", {})
    await until(store.holding.is_set, "the running row's write started")
    assert job.status == "running"
    cancelling = asyncio.create_task(runner.cancel(job.id))
    await asyncio.sleep(0.01)
    store.gate.set()
    await cancelling
    await until(lambda: "running" in store.written, "the slow write landed")
    assert job.status == "cancelled" and job.error and job.error["code"] == "cancelled"
    assert store.written[-1] == "cancelled" and stored_status(store, job.id) == "cancelled"
    await runner.close()


async def test_progress_from_a_thread_that_outlives_its_job_is_ignored(tmp_path: Path) -> None:
    reported, go_on, finished = threading.Event(), threading.Event(), threading.Event()

    def work(progress: Progress) -> None:
        progress(1, 10)
        reported.set()
        go_on.wait(timeout=10)
        progress(9, 10)  # the job was cancelled meanwhile
        finished.set()

    async def in_a_thread(body: dict[str, Any], progress: Progress) -> dict[str, Any]:
        await asyncio.to_thread(work, progress)
        return {}

    store = JobStore(tmp_path / "jobs.sqlite3")
    runner = JobRunner(store, {"work": in_a_thread}, max_queued=10)
    await runner.start()
    job = await runner.submit("work", {})
    await until(reported.is_set, "first progress")
    await runner.cancel(job.id)
    go_on.set()
    await until(finished.is_set, "the thread ended")
    assert job.status == "cancelled"
    assert job.to_dict()["progress"] == {"done": 1, "total": 10}  # as persisted at the end
    assert {j.id: j.done for j in store.load_all()}[job.id] == 1
    await runner.close()


async def test_concurrent_submits_respect_the_queue_bound(tmp_path: Path) -> None:
    runner = JobRunner(JobStore(tmp_path / "jobs.sqlite3"), {"wait": never_ends}, max_queued=1)
    await runner.start()
    first = await runner.submit("wait", {})
    await until(lambda: first.status == "running", "the worker took the first job")
    outcomes = await asyncio.gather(
        *(runner.submit("wait", {}) for _ in range(3)), return_exceptions=True
    )
    assert sum(isinstance(o, QueueFull) for o in outcomes) == 2
    assert runner.queued() == 1
    await runner.close()
