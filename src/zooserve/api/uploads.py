"""Requests that carry their media: a multipart upload (`file` + a JSON `request` field)
instead of `video_path`. The file is stored under media_root/.uploads/ for the request's
lifetime and removed afterwards; what a crashed process left there is swept at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from zooserve.api.errors import MAX_REPORTED_ERRORS, clip_text
from zooserve.api.request_guards import json_nesting_exceeds
from zooserve.api.request_settings import KEEP_ALIVE_DOC, apply_request_settings
from zooserve.core.errors import (
    BadRequest,
    InvalidRequest,
    UploadNotStored,
    ZooError,
)
from zooserve.runtimes.memory import MB

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
UPLOAD_DIR = ".uploads"
#: Settings an upload form may also give as parts of their own, beside `request`.
SETTING_PARTS = ("keep_alive",)
#: Parts a form may hold. Text parts are kept in memory, and each file's first megabyte
#: (Starlette's defaults, 1,000 of each, let a 512 MB form sit in memory).
MAX_FORM_FIELDS = 8
MAX_FORM_FILES = 2


def sweep_stale_uploads(media_root: Path) -> int:
    """Delete what media_root/.uploads holds at start-up; returns how many uploads went.

    Every upload there belongs to a request of an earlier process (a live one removes its
    own), so call this once, before serving. Only entries inside .uploads are removed: a
    symlink is unlinked, never followed, and a .uploads that is itself a symlink is left alone.
    """
    folder = media_root / UPLOAD_DIR
    try:  # O_NOFOLLOW: a .uploads swapped for a link fails here instead of being followed
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("stale uploads not swept: %s is not a plain folder (%s)", folder, exc)
        return 0
    removed = 0
    try:
        for entry in list(os.scandir(fd)):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.name, dir_fd=fd)  # never follows links inside
                else:
                    os.unlink(entry.name, dir_fd=fd)  # a link goes, not what it points at
                removed += 1
            except OSError as exc:
                log.warning("cannot remove stale upload %s/%s: %s", folder, entry.name, exc)
    finally:
        os.close(fd)
    log.info("removed %d stale upload(s) from %s", removed, folder)
    return removed


def _not_stored(exc: OSError) -> ZooError:
    """A server-side failure to keep an upload (disk full, unwritable media_root): logged with
    its path here, answered without it (the caller cannot act on the server's layout)."""
    log.error("cannot store an upload: %s", exc)
    return UploadNotStored(
        f"the upload could not be stored on the server ({exc.strerror or type(exc).__name__})"
    )


def _invalid(exc: ValidationError) -> InvalidRequest:
    errors = [
        {
            "location": clip_text(".".join(str(p) for p in e["loc"]), 200),
            "message": clip_text(e["msg"], 300),
            "type": e["type"],
        }
        for e in exc.errors()[:MAX_REPORTED_ERRORS]
    ]
    where = ", ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
    return InvalidRequest(f"invalid request: {where}", {"errors": errors})


def _setting(request: Request, name: str, default: float) -> float:
    """A setting of the serving app's config (tests may serve without a manager)."""
    config = getattr(getattr(request.app.state, "manager", None), "config", None)
    return float(getattr(config, name, default))


async def _read_form(request: Request) -> FormData:
    """The multipart form, its parts bounded: the `request` part is JSON, so it has JSON's
    limit (max_json_mb); the file itself streams to disk."""
    max_part = int(_setting(request, "max_json_mb", 4) * MB)
    try:
        return await request.form(
            max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS, max_part_size=max_part
        )
    except HTTPException as exc:  # Starlette's 400 for a malformed or oversized form
        raise BadRequest(f"invalid multipart form: {exc.detail}") from exc


def _save(upload: UploadFile, path: Path) -> None:
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out)


def _with_setting_parts(form: FormData, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` plus the per-request settings given as parts of their own (`-F keep_alive=0`):
    each at most once, as text, and not also inside `request`."""
    for name in SETTING_PARTS:
        parts = form.getlist(name)
        if not parts:
            continue
        if len(parts) > 1 or not isinstance(parts[0], str):
            raise InvalidRequest(f"the `{name}` part must be one text field")
        if name in fields:
            raise InvalidRequest(f"give `{name}` once: as a part or inside `request`, not both")
        fields = {**fields, name: parts[0]}
    return fields


@contextlib.asynccontextmanager
async def task_request(request: Request, model: type[M], media_root: Path) -> AsyncIterator[M]:
    """Parse a JSON body, or a multipart upload whose file becomes `video_path`; the body's
    per-request settings (`keep_alive`) then apply to the rest of the request."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise InvalidRequest("invalid request: the body is not valid JSON") from exc
        try:
            parsed = model.model_validate(body)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        apply_request_settings(parsed)
        yield parsed
        return
    form = await _read_form(request)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise BadRequest("multipart requests need a `file` part (the video or image)")
    parts = form.getlist("request")
    if len(parts) > 1 or (parts and not isinstance(parts[0], str)):
        raise InvalidRequest("the `request` part must be one text field holding a JSON object")
    raw = str(parts[0]) if parts else "{}"
    limit = int(_setting(request, "max_json_depth", 32))
    if json_nesting_exceeds(raw.encode(), limit):
        raise InvalidRequest(f"the `request` part nests deeper than {limit} levels")
    try:
        fields = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest("the `request` part must be a JSON object") from exc
    if not isinstance(fields, dict):
        raise InvalidRequest("the `request` part must be a JSON object")
    fields = _with_setting_parts(form, fields)
    name = (
        re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.filename).name)[-100:].lstrip(".") or "upload"
    )
    folder = media_root / UPLOAD_DIR / uuid.uuid4().hex
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        await upload.close()
        raise _not_stored(exc) from exc
    try:
        try:
            await asyncio.to_thread(_save, upload, folder / name)
        except OSError as exc:
            raise _not_stored(exc) from exc
        try:
            parsed = model.model_validate(
                {**fields, "video_path": f"{UPLOAD_DIR}/{folder.name}/{name}"}
            )
        except ValidationError as exc:
            raise _invalid(exc) from exc
        apply_request_settings(parsed)
        yield parsed
    finally:
        await upload.close()
        shutil.rmtree(folder, ignore_errors=True)


def upload_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a route that takes `model` as JSON or as a multipart upload."""
    return {
        "requestBody": {
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "request": {
                                "type": "string",
                                "description": "the other fields, JSON (`keep_alive` too)",
                            },
                            "keep_alive": {
                                "type": "string",
                                "description": KEEP_ALIVE_DOC + " Here or inside `request`.",
                            },
                        },
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    }
