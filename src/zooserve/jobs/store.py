"""What a job is and where it is kept: the `Job` record and its SQLite rows.

A record shows no secret: its result and error pass through `hide_secrets` before a row is
written and before a record is returned (an engine's error may quote its key).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zooserve.core.redaction import hide_secrets

TERMINAL = ("succeeded", "failed", "cancelled")
#: Rows deleted per statement (SQLite caps the number of bound variables).
_DELETE_CHUNK = 500


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
        shown: dict[str, Any] = hide_secrets(data)
        return shown


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
            json.dumps(hide_secrets(job.result)) if job.result is not None else None,
            json.dumps(hide_secrets(job.error)) if job.error is not None else None,
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
