"""Which model a forwarded request will use: the key Ray Serve routes it by.

The key is only a hint for placement (send the request where its model is already loaded);
the replica's own app still picks and checks the model as the single-node server does, so a
wrong or missing hint costs a load, never a wrong answer. Requests without a model (the
dashboard, /metrics, /openapi.json) go to any replica.
"""

from __future__ import annotations

import json
from typing import Any

from zooserve.manager import ModelManager
from zooserve.pipelines.selection import selected_model

#: Routes that lease a model: path -> (the task whose models serve it when the body names
#: none, the body field that names one).
TASK_ROUTES: dict[str, tuple[str | None, str]] = {
    "/api/detect": ("object_detection", "model"),
    "/api/annotate": ("object_detection", "model"),
    "/api/track": ("video_tracking", "tracking_model"),
    "/api/enrich": (None, "model"),
    "/models/load": (None, "model_id"),
    "/models/unload": (None, "model_id"),
}
#: Job task name -> the route that runs it (jobs run in the ingress, see ingress.py).
JOB_ROUTES = {
    "detect": "/api/detect",
    "track": "/api/track",
    "enrich": "/api/enrich",
    "summarize": "/api/summarize",
    "augment": "/api/augment",
}


def request_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """The JSON fields of a JSON body; anything else gives {} (an upload's `request` part is
    read while it is spooled, spool.py; the replica answers an unparsable body's 4xx)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def routing_key(manager: ModelManager, path: str, fields: dict[str, Any]) -> str | None:
    """The model the request at `path` with body `fields` will lease, or None (any replica).

    `manager` is a never-started manager over the same config: it answers from the config
    and the files on this machine, like the replica's own selection, and loads nothing."""
    route = TASK_ROUTES.get(path)
    if route is None:
        return None
    task, field = route
    requested = fields.get(field)
    if isinstance(requested, str) and requested:
        return requested if requested in manager.states else None
    if task is None or task not in manager.config.tasks:
        return None
    prompts = fields.get("prompts")
    texts = [p for p in prompts if isinstance(p, str)] if isinstance(prompts, list) else None
    try:
        return selected_model(manager, task, None, texts or None)
    except Exception:  # the replica reports the caller's mistake in full
        return None
