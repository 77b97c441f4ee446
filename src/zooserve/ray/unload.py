"""`/models/unload` on a cluster: every live replica unloads the model, and the answer says
which did.

Ray Serve would route the request to one replica (one that holds the model, when Ray knows
of one), leaving copies on the others loaded. Instead the ingress asks every replica that
reports (directory.py) through its own app, as the single-node server would answer, and
merges: 200 when each replica unloaded it or did not hold it, `unloaded_from` naming those
that did; otherwise the first error (a 409 `model_in_use` before a 503), with every replica's
own answer in `details.replicas`, so a caller knows what was freed and what to retry.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi.responses import JSONResponse

from zooserve.api.errors import error_response
from zooserve.ray.asgi import Forwarded, Reply

#: How long a replica may take to unload (it first waits out a load in progress).
ASK_TIMEOUT_S = 120.0


async def unload_everywhere(directory: Any, request: Forwarded) -> JSONResponse:
    replicas = [report["replica"] for report in await directory.fresh.remote()]
    replies = await asyncio.gather(
        *(directory.ask.remote(replica, request, ASK_TIMEOUT_S) for replica in replicas)
    )
    return merge_unloads(replicas, replies)


def outcome(replica: str, reply: Reply | None) -> dict[str, Any]:
    """One replica's answer: its HTTP status and its JSON body, tagged with its id."""
    if reply is None:
        error = {
            "code": "replica_unavailable",
            "message": f"the replica did not answer within {ASK_TIMEOUT_S:.0f} s",
            "details": {},
        }
        return {"replica": replica, "http_status": 503, "error": error}
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = {}
    return {
        "replica": replica,
        "http_status": reply.status,
        **(body if isinstance(body, dict) else {}),
    }


def merge_unloads(replicas: list[str], replies: list[Reply | None]) -> JSONResponse:
    """One answer for the cluster from each replica's (None: it did not answer)."""
    if not replicas:
        return error_response(
            503, "replica_unavailable", "no replica is reporting; retry", retry_after=1
        )
    outcomes = [outcome(r, reply) for r, reply in zip(replicas, replies, strict=True)]
    unloaded = [o["replica"] for o in outcomes if o.get("status") == "unloaded"]
    failed = sorted(
        (o for o in outcomes if o["http_status"] >= 400), key=lambda o: o["http_status"]
    )
    if not failed:
        return JSONResponse(
            {
                "model_id": outcomes[0].get("model_id"),
                "status": "unloaded" if unloaded else "not_loaded",
                "unloaded_from": unloaded,
                "replicas": outcomes,
            }
        )
    error = failed[0].get("error") or {}
    waits = [float(r.header(b"retry-after") or 0) for r in replies if r is not None]
    return error_response(
        failed[0]["http_status"],
        str(error.get("code", "internal_error")),
        str(error.get("message", "")),
        {**(error.get("details") or {}), "unloaded_from": unloaded, "replicas": outcomes},
        retry_after=max(waits, default=0) or (1 if failed[0]["http_status"] == 503 else None),
    )
