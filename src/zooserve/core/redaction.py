"""Every secret this process knows, and the one place that hides them from what it shows.

Engine API keys (`api_key_env`), URL passwords, the secret flags and variables of launch
commands and the service's own key are registered as the engines and the app are built
(`register_secrets`; an engine's come from `EngineSpec.secrets()`). Error envelopes, job
records (memory, SQLite) and log lines pass through `hide_secrets` before anyone sees them:
upstream engines echo keys in their error bodies, and a message travels from the engine client
to a 503, a job row and a WARNING line.

`hide_secrets` replaces known values only, so a summary that says "key: red car" stays
intact. Text known to come from outside (an engine's error body, a subprocess's output) also
goes through `redact_text`, which hides secret-shaped values (`--api-key X`, `Bearer X`,
`user:pass@`) that were never registered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

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
#: How much of another server's text (an engine's error body) a message repeats: it reaches
#: 503s, job records and log lines.
UPSTREAM_TEXT_LIMIT = 500
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


class SecretRegistry:
    """The secret values one process must never show. It only grows: a value once secret
    stays secret (several apps in one process, e.g. tests, share it harmlessly)."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        """Register values (and their percent-decoded forms); short ones are ignored."""
        fresh = {form for value in values if value for form in (value, unquote(value))}
        with self._lock:
            known = set(self._values) | {v for v in fresh if len(v) >= _MIN_LITERAL}
            # Longest first: a secret that contains another is replaced whole.
            self._values = tuple(sorted(known, key=len, reverse=True))

    def hide(self, value: Any) -> Any:
        """`value` (str, or JSON-like containers of them) with every known secret `***`."""
        values = self._values
        if not values:
            return value
        return _replace_known(value, values)


def _replace_known(value: Any, values: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {_replace_known(k, values): _replace_known(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_known(item, values) for item in value]
    if isinstance(value, tuple):
        return tuple(_replace_known(item, values) for item in value)
    return value


#: The process's secrets (logging is process-wide, so the register is too).
KNOWN_SECRETS = SecretRegistry()


def register_secrets(values: Iterable[str]) -> None:
    KNOWN_SECRETS.add(values)


def hide_secrets(value: Any) -> Any:
    """`value` with every registered secret replaced by `***` (see SecretRegistry.hide)."""
    return KNOWN_SECRETS.hide(value)


def clip_upstream(text: str, limit: int = UPSTREAM_TEXT_LIMIT) -> str:
    """Text from another server, safe to repeat: secret-shaped values hidden, then bounded."""
    text = redact_text(hide_secrets(text))
    return text if len(text) <= limit else text[:limit] + "..."
