"""Per-request settings a task body may carry beside its task's own fields (today
`keep_alive`; schemas.TaskSettings declares them), and the one place that hands them to the
manager through `zooserve.core.request_context`: for the route, the upload form and the job
alike."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, WithJsonSchema

from zooserve.catalog import parse_keep_alive
from zooserve.core import request_context

#: What a duration string may look like: ASCII digits and spaces only, checked whole, so the
#: documented pattern is never looser than what is accepted (the OpenAPI fuzzer holds us to it).
KEEP_ALIVE_PATTERN = r"^ *-?[0-9]+(\.[0-9]+)? *(ms|s|m|h)? *$"
_KEEP_ALIVE = re.compile(KEEP_ALIVE_PATTERN)
KEEP_ALIVE_DOC = (
    "How long the model stays loaded once this request is done (Ollama's `keep_alive`): "
    'seconds (`300`) or a duration (`"30s"`, `"5m"`, `"1h"`); `0` unloads it as soon as the '
    'request ends; a negative value (`-1`, `"-1"`) pins it. Absent or null: the model\'s '
    "configured keep-alive."
)


def keep_alive_seconds(value: Any) -> float | None:
    """A body's `keep_alive` in seconds, via the config's own parser; ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number of seconds or a duration like 30s, 5m, 1h or -1")
    if isinstance(value, str) and not _KEEP_ALIVE.fullmatch(value):
        raise ValueError(f"expected a duration like 30s, 5m, 1h or -1, got {value[:40]!r}")
    try:
        seconds = parse_keep_alive(value)
    except OverflowError:  # an integer too large for a float (JSON numbers are unbounded)
        seconds = math.inf
    if seconds is not None and not math.isfinite(seconds):
        raise ValueError("expected a finite number of seconds (-1 pins the model)")
    return seconds


#: The field's type: accepted as a number or a duration string, held as seconds.
KeepAlive = Annotated[
    float | None,
    BeforeValidator(keep_alive_seconds),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "pattern": KEEP_ALIVE_PATTERN},
                {"type": "null"},
            ]
        }
    ),
]


def apply_request_settings(body: BaseModel) -> None:
    """Set this request's settings for the work that follows in the same task (and the tasks
    it starts). Not reset here: a streamed answer still runs the pipeline after the route
    returned; the HTTP middleware resets them when the request ends, a job's task ends with
    the job."""
    request_context.keep_alive.set(getattr(body, "keep_alive", None))
