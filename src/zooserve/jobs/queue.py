"""Async jobs for long work: a bounded queue, workers, progress, cancellation, and SQLite
persistence so a restart keeps every job's state and finished results.

A job that was running when the process died is marked failed with the reason (its partial
work is not resumable); jobs still queued are queued again.

Storage is bounded by count and age, not by uptime: finished jobs beyond the `keep` most
recently finished, or finished more than `max_age_s` ago, are pruned from memory and SQLite
at start-up and whenever a job finishes (queued and running jobs never are). Memory holds
each job's metadata only: a finished job's result (and body) live in SQLite, read when a
caller asks for that job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zooserve.core.errors import ZooError
from zooserve.jobs.store import TERMINAL, Job, JobStore, expired

#: The record and its store live in job_store.py; importers of this module see them here too.
__all__ = [
    "TERMINAL",
    "Job",
    "JobNotFound",
    "JobRunner",
    "JobStore",
    "Progress",
    "QueueFull",
    "TaskRunner",
    "expired",
]

log = logging.getLogger("zooserve.jobs.queue")
#: progress(done, total) -> None
Progress = Callable[[int, int], None]
#: A task runner: (body, progress) -> JSON-serialisable result.
TaskRunner = Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]


class QueueFull(ZooError):
    status, code = 429, "queue_full"


class JobNotFound(ZooError):
    status, code = 404, "job_not_found"


class JobRunner:
    """Queue + workers. `tasks` maps a task name to its runner; `keep` and `max_age_s` bound
    the finished jobs kept (the config's `jobs_keep`, `jobs_max_age_s`)."""

    def __init__(
        self,
        store: JobStore,
        tasks: dict[str, TaskRunner],
        max_queued: int,
        workers: int = 1,
        *,
        keep: int = 200,
        max_age_s: float = 7 * 24 * 3600,
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.max_queued = max_queued
        self.keep = keep
        self.max_age_s = max_age_s
        self.jobs: dict[str, Job] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self._worker_count = workers
        self._submitting = 0  # submits persisting their job: they hold a queue slot
        self._cancelling: set[str] = set()  # queued jobs whose cancellation is being written
        # One writer thread: rows reach SQLite in the order the loop wrote them, even when a
        # cancelled caller stopped waiting for an earlier write.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="zooserve-jobs-db")

    async def start(self) -> None:
        """Restore persisted jobs: running -> failed (interrupted), queued -> queued again;
        then prune what is over the count or age."""
        for job in await asyncio.to_thread(self.store.load_all):
            job.read_result = self._read_result
            self.jobs[job.id] = job
            if job.status == "running":
                job.status, job.finished_at = "failed", time.time()
                job.error = {
                    "code": "interrupted",
                    "message": "the server stopped while this job was running",
                }
                await self._save(job)
            elif job.status == "queued":
                self._queue.put_nowait(job.id)
        await self._prune()
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._worker_count)]

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._workers, *self._running.values(), return_exceptions=True)
        self._writer.shutdown(wait=False)  # queued writes still run

    def queued(self) -> int:
        return self._queue.qsize()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    async def submit(self, task: str, body: dict[str, Any]) -> Job:
        queued = self._queue.qsize() + self._submitting
        if queued >= self.max_queued:
            raise QueueFull(
                f"{queued} jobs are queued (limit {self.max_queued}); retry later",
                {"queued": queued},
                retry_after=10,
            )
        job = Job(id=uuid.uuid4().hex, task=task, body=body, read_result=self._read_result)
        self.jobs[job.id] = job
        self._submitting += 1
        try:
            await self._save(job)
        finally:
            self._submitting -= 1
        self._queue.put_nowait(job.id)
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise self._not_found(job_id)
        return job

    def _not_found(self, job_id: str) -> JobNotFound:
        job_id = job_id if len(job_id) <= 64 else job_id[:64] + "…"  # never echo a huge id
        return JobNotFound(
            f"no job {job_id!r}: it does not exist, or it finished and was pruned (the "
            f"{self.keep} most recently finished jobs are kept, for {self.max_age_s:g} s each)",
            {"job_id": job_id, "jobs_keep": self.keep, "jobs_max_age_s": self.max_age_s},
        )

    def _read_result(self, job_id: str) -> dict[str, Any] | None:
        """A finished job's result from SQLite (short; the row is read by its key)."""
        found, result = self.store.load_result(job_id)
        if not found:  # pruned between the lookup and this read
            raise self._not_found(job_id)
        return result

    async def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status == "queued" and job.id not in self._cancelling:
            self._cancelling.add(job.id)  # the worker skips it while the cancel is written
            try:
                await self._finish(
                    job, "cancelled", error={"code": "cancelled", "message": "cancelled"}
                )
            finally:
                self._cancelling.discard(job.id)
        elif job.status == "running" and job.id in self._running:
            self._running[job.id].cancel()
            await asyncio.gather(self._running[job.id], return_exceptions=True)
        return job

    async def wait_for_change(self, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _finish(
        self,
        job: Job,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        # Persist first, then show: a client that saw "succeeded" can rely on it surviving a crash.
        final = dataclasses.replace(
            job, status=status, result=result, error=error, finished_at=time.time()
        )
        await self._save(final)
        # Memory keeps the metadata; the result and body are read back from SQLite when asked.
        job.status, job.result, job.error, job.finished_at = status, None, error, final.finished_at
        job.body = {}
        await self._notify()
        await self._prune()

    async def _prune(self) -> None:
        """Drop expired finished jobs from memory now and from SQLite on the writer (after
        every write already queued, so a pruned row is never written again)."""
        gone = expired(self.jobs.values(), self.keep, self.max_age_s, time.time())
        if not gone:
            return
        for job_id in gone:
            del self.jobs[job_id]
        await asyncio.get_running_loop().run_in_executor(self._writer, self.store.delete, gone)

    async def _save(self, job: Job) -> None:
        """Write a snapshot of `job` (the loop keeps changing the live one) on the writer."""
        snapshot = dataclasses.replace(job)
        await asyncio.get_running_loop().run_in_executor(self._writer, self.store.save, snapshot)

    async def _work(self) -> None:
        while True:
            job = self.jobs.get(await self._queue.get())
            # Cancelled while waiting (and perhaps pruned since): nothing to run.
            if job is None or job.status != "queued" or job.id in self._cancelling:
                continue
            task = asyncio.create_task(self._run(job))
            self._running[job.id] = task
            try:
                await asyncio.gather(task, return_exceptions=True)
            finally:
                self._running.pop(job.id, None)

    async def _run(self, job: Job) -> None:
        job.status, job.started_at = "running", time.time()
        loop = asyncio.get_running_loop()
        ended = False  # set before the end is written: later progress (a thread) is ignored

        def progress(done: int, total: int) -> None:
            if ended:
                return
            job.done, job.total = done, total
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify()))

        try:  # a cancel can land at any await from here on, the first write included
            await self._save(job)
            await self._notify()
            result = await self.tasks[job.task](job.body, progress)
        except asyncio.CancelledError:
            ended = True
            await self._finish(
                job, "cancelled", error={"code": "cancelled", "message": "cancelled"}
            )
            raise
        except ZooError as exc:
            ended = True
            await self._finish(
                job,
                "failed",
                error={"code": exc.code, "message": exc.message, "details": exc.details},
            )
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.task)
            ended = True
            await self._finish(
                job,
                "failed",
                error={"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"},
            )
        else:
            ended = True
            if job.total == 0:
                job.done = job.total = 1
            await self._finish(job, "succeeded", result=result)
