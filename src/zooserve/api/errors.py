"""One error envelope for every failure: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zooserve.errors import ZooError

log = logging.getLogger("zooserve.api")


def error_response(
    status: int, code: str, message: str, details: Any = None, retry_after: float | None = None
) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "location": ".".join(str(p) for p in err["loc"]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ZooError)
    async def _zoo_error(request: Request, exc: ZooError) -> JSONResponse:
        if exc.status >= 500 and exc.status not in (501, 503, 507):
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.retry_after)

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
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Our bug, not the caller's: log the trace, never send it.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")
