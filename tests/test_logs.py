"""Log lines never show a registered secret, in text or JSON, in the message or a traceback."""

from __future__ import annotations

import io
import json
import logging

import pytest

from zooserve.core.logs import JsonFormatter, SecretsFilter
from zooserve.core.redaction import register_secrets

SECRET = "log-secret-5f3a9c"


@pytest.mark.parametrize("formatter", [logging.Formatter("%(message)s"), JsonFormatter()])
def test_a_log_line_hides_registered_secrets(formatter: logging.Formatter) -> None:
    register_secrets([SECRET])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretsFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger("zooserve.test_logs")
    logger.addHandler(handler)
    try:
        logger.warning("engine failed: %s", f"HTTP 401: bad key {SECRET}")
        try:
            raise RuntimeError(f"token {SECRET} refused")
        except RuntimeError:
            logger.exception("job failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "engine failed: HTTP 401: bad key ***" in text
    assert "RuntimeError: token *** refused" in text
    assert SECRET not in text
    if isinstance(formatter, JsonFormatter):
        failed = json.loads(text.splitlines()[-1])
        assert "RuntimeError: token *** refused" in failed["exception"]
