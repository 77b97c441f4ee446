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
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zooserve.errors import ZooError

log = logging.getLogger("zooserve.jobs")
TERMINAL = ("succeeded", "failed", "cancelled")
#: Rows deleted per statement (SQLite caps the number of bound variables).
_DELETE_CHUNK = 500
#: progress(done, total) -> None
Progress = Callable[[int, int], None]
#: A task runner: (body, progress) -> JSON-serialisable result.
TaskRunner = Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]


class QueueFull(ZooError):
    status, code = 429, "queue_full"


class JobNotFound(ZooError):
    status, code = 404, "job_not_found"


@dataclass
class Job:
    id: str
    task: str
    body: dict[str, Any]
    status: str = "queued"
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    #: Reads the stored result by job id, for a finished job whose result is not in memory.
    read_result: Callable[[str], dict[str, Any] | None] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def ended_at(self) -> float:
        """When it finished (rows written before finished_at existed: when it was created)."""
        return self.finished_at if self.finished_at is not None else self.created_at

    def to_dict(self, with_result: bool = True) -> dict[str, Any]:
        data = {
            "job_id": self.id,
            "task": self.task,
            "status": self.status,
            "progress": {"done": self.done, "total": self.total},
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if with_result:
            result = self.result
            if result is None and self.status == "succeeded" and self.read_result is not None:
                result = self.read_result(self.id)
            data["result"] = result
        return data


def expired(jobs: Iterable[Job], keep: int, max_age_s: float, now: float) -> list[str]:
    """Ids of the finished jobs to prune: all but the `keep` most recently finished, and any
    finished more than `max_age_s` before `now`. Queued and running jobs are never expired."""
    finished = sorted(
        (job for job in jobs if job.status in TERMINAL),
        key=lambda job: (job.ended_at, job.created_at, job.id),
        reverse=True,
    )
    return [
        job.id
        for rank, job in enumerate(finished)
        if rank >= keep or now - job.ended_at > max_age_s
    ]


class JobStore:
    """SQLite rows, one per job. Calls are short; the runner makes them off the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, task TEXT, body TEXT,"
                " status TEXT, done INTEGER, total INTEGER, result TEXT, error TEXT,"
                " created_at REAL, started_at REAL, finished_at REAL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def save(self, job: Job) -> None:
        row = (
            job.id,
            job.task,
            json.dumps(job.body),
            job.status,
            job.done,
            job.total,
            json.dumps(job.result) if job.result is not None else None,
            json.dumps(job.error) if job.error is not None else None,
            job.created_at,
            job.started_at,
            job.finished_at,
        )
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)

    def load_all(self) -> list[Job]:
        """Every job's metadata, oldest first: no results, and bodies only of the jobs that
        still need them (queued or running), so start-up reads little whatever was stored."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, task, CASE WHEN status IN ('queued', 'running') THEN body END,"
                " status, done, total, error, created_at, started_at, finished_at"
                " FROM jobs ORDER BY created_at"
            ).fetchall()
        return [
            Job(
                id=r[0],
                task=r[1],
                body=json.loads(r[2]) if r[2] else {},
                status=r[3],
                done=r[4],
                total=r[5],
                error=json.loads(r[6]) if r[6] else None,
                created_at=r[7],
                started_at=r[8],
                finished_at=r[9],
            )
            for r in rows
        ]

    def load_result(self, job_id: str) -> tuple[bool, dict[str, Any] | None]:
        """(whether the job's row exists, its stored result)."""
        with self._connect() as db:
            row = db.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return False, None
        return True, json.loads(row[0]) if row[0] else None

    def delete(self, job_ids: list[str]) -> None:
        with self._connect() as db:
            for start in range(0, len(job_ids), _DELETE_CHUNK):
                chunk = job_ids[start : start + _DELETE_CHUNK]
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)


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
