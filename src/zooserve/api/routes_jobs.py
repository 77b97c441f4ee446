"""Async jobs: POST /api/jobs (202), GET /api/jobs[/{id}], GET /api/jobs/{id}/events (SSE),
DELETE /api/jobs/{id}. The body of a job is the body of the task's own route."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from zooserve.api.errors import MAX_REPORTED_ERRORS, clip_text
from zooserve.api.schemas import StrictRequest
from zooserve.api.streaming import ClosingStreamingResponse
from zooserve.core.errors import InvalidInput
from zooserve.jobs.queue import TERMINAL, JobRunner

router = APIRouter(prefix="/api")


class JobRequest(StrictRequest):
    task: str
    body: dict[str, Any]


def runner_of(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.jobs
    return jobs


def validate_body(tasks: dict[str, Any], task: str, body: dict[str, Any]) -> None:
    """The job's body against its task's request model, now rather than when it runs; the
    answer names at most MAX_REPORTED_ERRORS errors, each bounded (never the input)."""
    if task not in tasks:
        raise InvalidInput(f"unknown task {clip_text(task, 100)!r}; known tasks: {sorted(tasks)}")
    try:
        tasks[task][0].model_validate(body)
    except ValidationError as exc:
        errors = [
            {
                "location": clip_text(".".join(str(p) for p in e["loc"]), 200),
                "message": clip_text(e["msg"], 500),
            }
            for e in exc.errors()[:MAX_REPORTED_ERRORS]
        ]
        raise InvalidInput(f"invalid body for task {task!r}", {"errors": errors}) from exc


@router.post("/jobs", status_code=202)
async def submit_job(body: JobRequest, request: Request) -> JSONResponse:
    validate_body(request.app.state.job_tasks, body.task, body.body)
    job = await runner_of(request).submit(body.task, body.body)
    return JSONResponse(
        {"job_id": job.id, "status": job.status},
        status_code=202,
        headers={"Location": f"/api/jobs/{job.id}"},
    )


@router.get("/jobs")
async def list_jobs(request: Request) -> dict[str, Any]:
    runner = runner_of(request)
    jobs = sorted(runner.jobs.values(), key=lambda j: j.created_at, reverse=True)
    return {"jobs": [j.to_dict(with_result=False) for j in jobs[:100]], "queued": runner.queued()}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    # A finished job's result is read from SQLite: off the event loop.
    return await asyncio.to_thread(runner_of(request).get(job_id).to_dict)


@router.delete("/jobs/{job_id}")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    job = await runner_of(request).cancel(job_id)
    return job.to_dict(with_result=False)


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: a `progress` event on every change, then one terminal event."""
    runner = runner_of(request)
    job = runner.get(job_id)

    async def stream() -> AsyncIterator[str]:
        last: tuple[Any, ...] | None = None
        while True:
            state = (job.status, job.done, job.total)
            if state != last:
                last = state
                kind = job.status if job.status in TERMINAL else "progress"
                yield f"event: {kind}\ndata: {json.dumps(job.to_dict(with_result=False))}\n\n"
            if job.status in TERMINAL or await request.is_disconnected():
                return
            await runner.wait_for_change(timeout=1.0)

    return ClosingStreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
