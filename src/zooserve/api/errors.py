"""One error envelope for every failure: `{"error": {"code", "message", "details"}}`.

Every envelope passes through `error_response`, which hides the process's known secrets
(zooserve.core.redaction): a message may quote an engine's error body, which may quote its key."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from zooserve.api.schemas import ErrorResponse
from zooserve.core.errors import MediaClosed, ZooError
from zooserve.core.redaction import hide_secrets

log = logging.getLogger("zooserve.api")
#: A body can fail in many places at once; the caller gets the first few, each bounded.
MAX_REPORTED_ERRORS = 20
#: Retry-After of a 429 whose error named no time of its own.
DEFAULT_RETRY_AFTER_S = 1.0


def error_response(
    status: int, code: str, message: str, details: Any = None, retry_after: float | None = None
) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(hide_secrets(body), status_code=status, headers=headers)


def clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Location, message and type of each error, as plain bounded strings: never the input
    itself (bytes, a megabyte of text) nor pydantic's `ctx` objects."""
    return [
        {
            "location": clip_text(".".join(str(p) for p in err.get("loc", ())), 200),
            "message": clip_text(str(err.get("msg", "")), 500),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()[:MAX_REPORTED_ERRORS]
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ZooError)
    async def _zoo_error(request: Request, exc: ZooError) -> JSONResponse:
        if exc.status >= 500 and exc.status not in (501, 503, 507):
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        retry_after = exc.retry_after
        if exc.status == 429 and not retry_after:  # "too many": always say when to come back
            retry_after = DEFAULT_RETRY_AFTER_S
        return error_response(exc.status, exc.code, exc.message, exc.details, retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        where = ", ".join(f"{d['location']}: {d['message']}" for d in details[:5])
        return error_response(
            422, "invalid_request", f"invalid request: {where}", {"errors": details}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, clip_text(str(exc.detail), 500))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # Any route that reads a body (the Ray ingress spooling an upload, too): the caller
        # left, nobody reads the answer; a 499 like every other client-gone case, not a 500.
        gone = MediaClosed("the client left before its request was read")
        return error_response(gone.status, gone.code, gone.message)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # A parser that recursed on a caller's nesting (the middleware bounds JSON bodies; a
        # multipart `request` field is parsed by the route): the caller's input, not our bug.
        log.warning("%s %s: input nested too deeply", request.method, request.url.path)
        return error_response(422, "invalid_request", "invalid request: the input nests too deeply")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Our bug, not the caller's: log the trace, never send it.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")


def document_errors(document: dict[str, Any]) -> None:
    """Make an OpenAPI document say what errors really look like: every operation's 422 and
    `default` answer is the envelope (FastAPI's own `{"detail": ...}` is never sent)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs", {}))
    components["ErrorResponse"] = envelope
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Invalid request", "content": content}
            responses["default"] = {"description": "Error", "content": content}
