"""Domain errors. Each carries the HTTP status and a stable code; api/errors.py maps them to JSON.

Raise these anywhere below the API; never raise HTTPException outside api/.
"""

from __future__ import annotations

from typing import Any


class ZooError(Exception):
    """Base of every error a caller may see. `details` must be JSON-serialisable."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


class ConfigError(ZooError):
    """The YAML config is invalid; message names the file and key path."""

    status, code = 500, "config_error"


class BadRequest(ZooError):
    status, code = 400, "bad_request"


class InvalidInput(ZooError):
    """Well-formed request whose content cannot be processed (bad frames, not a video, ...)."""

    status, code = 422, "invalid_input"


def require_text(value: str | None, field: str) -> None:
    """A required text field must hold more than whitespace (422 naming the field)."""
    if not value or not value.strip():
        raise InvalidInput(f"{field} must not be empty", {"field": field})


class FramesOutOfRange(InvalidInput):
    code = "frames_out_of_range"


class NotAVideo(InvalidInput):
    code = "not_a_video"


class PathForbidden(ZooError):
    """A request path resolves outside media_root."""

    status, code = 403, "path_forbidden"


class MediaNotFound(ZooError):
    status, code = 404, "media_not_found"


class ModelNotFound(ZooError):
    status, code = 404, "model_not_found"


class ModelUnavailable(ZooError):
    """The model is configured but its weights are not present (offline) or it is disabled."""

    status, code = 404, "model_unavailable"


class ModelInUse(ZooError):
    status, code = 409, "model_in_use"


class ModelLoadFailed(ZooError):
    """Weights are present but could not be loaded (corrupt files, wrong format, ...)."""

    status, code = 500, "model_load_failed"


class BudgetExceeded(ZooError):
    """The model cannot fit the memory budget even with every idle model evicted."""

    status, code = 507, "insufficient_memory"


class ServiceBusy(ZooError):
    """Room exists only once busy models finish; the caller should retry later."""

    status, code = 503, "service_busy"


class QueueFull(ZooError):
    """`max_pending` requests already wait for memory: refused at once, not queued."""

    status, code = 429, "queue_full"


class MissingDependency(ZooError):
    """An optional extra (e.g. ultralytics) is needed for this model."""

    status, code = 501, "missing_dependency"


class FamilyNotImplemented(ZooError):
    """The config names a family this version of zooserve has no adapter for."""

    status, code = 501, "family_not_implemented"


class InvalidRequest(InvalidInput):
    """The request body does not match the route's schema."""

    code = "invalid_request"


class UnsupportedMedia(InvalidInput):
    """A file whose probed content is not an allowed container (playlists, concat lists, ...)."""

    code = "unsupported_media"


class MediaTooLarge(InvalidInput):
    """Declared frame size (or count) beyond the configured caps; refused before decoding."""

    code = "media_too_large"


class MediaClosed(ZooError):
    """A read was stopped because its request ended (cancelled job, vanished client)."""

    status, code = 499, "request_cancelled"


class InferenceFailed(ZooError):
    """An inference call crashed or ran past `inference_timeout_s`; its lane was replaced."""

    status, code = 503, "inference_failed"


class NoEngineAvailable(ZooError):
    """No language engine can serve the model now (down, unreachable, not launched): not load."""

    status, code = 503, "no_engine_available"


class UploadNotStored(ZooError):
    """The server could not keep an uploaded file (disk full, unwritable media_root)."""

    status, code = 507, "insufficient_storage"
