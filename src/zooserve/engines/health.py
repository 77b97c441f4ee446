"""The live view of each engine: what the last probe or request said, and when.

Probes (GET /health, else /v1/models) run on a timer; real requests update the view too, so an
engine that just refused a connection is skipped by the next request instead of timing it out
again. A skipped engine is named in the 503 with the reason it was skipped.

What the view shows is redacted (`redact`): engine argv, environments, URLs and error text carry
API keys and tokens (`--api-key sk-...`, `HF_TOKEN=...`, `http://user:pass@host`), and the view
reaches /health, /models/info and 503 details.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from zooserve.engines.config import EngineSpec

State = Literal["unknown", "up", "down"]
REDACTED = "***"
#: Name words that mark a value as secret: `--api-key`, `--hf-token`, `HF_TOKEN`, `"password":`.
_SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "pwd", "credential"}
    | {"credentials", "authorization", "cookie"}
)
#: ...or name endings, for camelCase names (`accessToken`); `max_tokens`, `tokenizer` stay.
_SECRET_ENDINGS = ("apikey", "token", "secret", "password", "passwd")
#: Known secrets shorter than this are not replaced in free text (they would mangle words).
_MIN_LITERAL = 4
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s'\"]+@")
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?"
    r"[^\s'\",;]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[\w.~+/=-]+")
#: `--flag value` in free text (the `=` form is a _PAIR).
_SPACED_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w.-]*)(\s+)(?!-)([^\s'\",]+)")
#: `name=value`, `name: value`, `'name': ['value']` (reprs, JSON, query strings, env dumps);
#: only names with a secret word are candidates, so a URL's `http:` cannot swallow its query.
_PAIR = re.compile(
    r"(?i)([\w.-]*(?:key|token|secret|passw(?:or)?d|pwd|credentials?|authorization|cookie)[\w.-]*)"
    r"""(["']?\s*[:=]\s*[\[(]?\s*["']?)([^\s"',&;)\]}]+)"""
)
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", REDACTED})


def is_secret_name(name: str) -> bool:
    """Whether a flag, variable or field name holds a secret (`--api-key`, `HF_TOKEN`)."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    return any(w in _SECRET_WORDS for w in words) or "".join(words).endswith(_SECRET_ENDINGS)


def secret_values(argv: Iterable[str], env: Mapping[str, str]) -> set[str]:
    """The values of secret flags (`--token X`, `--token=X`) and secret variables."""
    found = {value for name, value in env.items() if is_secret_name(name) and value}
    parts = list(argv)
    for index, part in enumerate(parts):
        flag, equals, value = part.partition("=")
        if not part.startswith("-") or not is_secret_name(flag):
            continue
        if equals and value:
            found.add(value)
        elif not equals and index + 1 < len(parts) and not parts[index + 1].startswith("-"):
            found.add(parts[index + 1])
    return found


def engine_secrets(spec: EngineSpec) -> set[str]:
    """Every secret the config gives an engine: its bearer token (`api_key_env`), the password
    in its base_url, and secret flags and variables of its launch command."""
    found: set[str] = set()
    token = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    if token:
        found.add(token)
    with contextlib.suppress(ValueError):
        password = urlsplit(spec.base_url or "").password
        if password:
            found.add(password)
    if spec.launch is not None:
        argv = [*(spec.launch.command or []), *spec.launch.args]
        found |= secret_values(argv, spec.launch.env)
    return found


def _hide_value(match: re.Match[str]) -> str:
    name, between, value = match.groups()
    if not is_secret_name(name) or value.lower() in _AUTH_SCHEMES:
        return match.group(0)
    return f"{name}{between}{REDACTED}"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with known secret values, URL userinfo, Authorization/Bearer credentials and the
    values of secret-named flags and fields replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_LITERAL:
            text = text.replace(secret, REDACTED)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    text = _SPACED_FLAG.sub(_hide_value, text)
    return _PAIR.sub(_hide_value, text)


def redact_argv(argv: Iterable[str], secrets: Iterable[str] = ()) -> list[str]:
    """An argv safe to show: the value after a secret flag and every secret inside a part."""
    known = set(secrets)
    shown: list[str] = []
    hide_next = False
    for part in argv:
        if hide_next and not part.startswith("-"):
            shown.append(REDACTED)
        else:
            shown.append(redact_text(part, known))
        hide_next = part.startswith("-") and "=" not in part and is_secret_name(part)
    return shown


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like value safe to show: strings redacted, string lists as argv, the string
    values of secret-named keys (an env mapping's `HF_TOKEN`) replaced whole."""
    known = set(secrets)
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(item, str) and isinstance(key, str) and is_secret_name(key)
            else redact(item, known)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        if all(isinstance(item, str) for item in value):
            return redact_argv(value, known)
        return [redact(item, known) for item in value]
    return value


@dataclass
class EngineHealth:
    """Mutable health record of one engine (owned by the pool, changed on the event loop only)."""

    state: State = "unknown"
    detail: str = ""
    checked_at: float | None = None  # clock() of the last observation
    checked_wall: float | None = None  # time.time() of the same, for reports
    latency_s: float | None = None
    consecutive_failures: int = 0
    requests: int = 0
    failures: int = 0

    def mark_up(self, now: float, detail: str, latency_s: float | None = None) -> None:
        self.state, self.detail = "up", detail
        self.checked_at, self.checked_wall = now, time.time()
        self.latency_s = latency_s
        self.consecutive_failures = 0

    def mark_down(self, now: float, reason: str) -> None:
        self.state, self.detail = "down", reason
        self.checked_at, self.checked_wall = now, time.time()
        self.consecutive_failures += 1

    def known_down(self, now: float, window_s: float) -> bool:
        """Down, and observed so within `window_s` (older news is re-checked by trying)."""
        return (
            self.state == "down"
            and self.checked_at is not None
            and now - self.checked_at < window_s
        )

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": redact_text(self.detail),
            "checked_seconds_ago": None
            if self.checked_at is None
            else round(max(0.0, now - self.checked_at), 3),
            "checked_at": self.checked_wall,
            "latency_s": self.latency_s,
            "consecutive_failures": self.consecutive_failures,
            "requests": self.requests,
            "failures": self.failures,
        }
