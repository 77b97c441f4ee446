"""The tasks a job may run: each is its route's request model plus the same pipeline call."""

from __future__ import annotations

from typing import Any

from zooserve.api.routes_detect import to_response
from zooserve.api.routes_jobs import TaskEntry
from zooserve.api.schemas import DetectRequest
from zooserve.jobs import Progress
from zooserve.manager import ModelManager
from zooserve.pipelines.detect import detect


async def _detect(manager: ModelManager, body: DetectRequest, progress: Progress) -> dict[str, Any]:
    result = await detect(
        manager,
        body.video_path,
        body.frame_numbers,
        model=body.model,
        confidence_threshold=body.confidence_threshold,
        prompts=body.prompts,
        progress=progress,
    )
    return to_response(result).model_dump()


def job_tasks() -> dict[str, TaskEntry]:
    return {"detect": (DetectRequest, _detect)}
