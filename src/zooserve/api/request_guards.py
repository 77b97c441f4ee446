"""What a request must pass before the app sees it, as pure checks over its headers and body:
where a browser sent it from, how big its body is (by kind), its media type and its JSON's
nesting depth. Each refusal is a `Refused` that the middleware answers."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
from starlette.types import Receive

JSON = "application/json"
#: Methods that change state: the ones a cross-site page must not make a browser send.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Small on purpose: a JSON body is parsed whole, into objects ~10x its size.
DEFAULT_MAX_JSON_BYTES = 4 << 20
#: A JSON string, or an unterminated one up to the end: linear, never backtracks per quote.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class Refused(Exception):
    """A request answered by the middleware itself, before the app sees it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text opens more than `limit` arrays/objects inside each other.

    Counted on the bytes, outside strings, before any parser recurses (a parser's own limit
    is a RecursionError). C-speed passes: strings cut out, brackets kept, depth by cumsum.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    codes = np.frombuffer(brackets, np.uint8)
    depth = 0
    for start in range(0, len(codes), 1 << 20):
        part = codes[start : start + (1 << 20)]
        running = np.cumsum(np.where((part == ord("[")) | (part == ord("{")), 1, -1)) + depth
        if int(running.max()) > limit:
            return True
        depth = int(running[-1])
    return False


def declared_length(headers: Mapping[bytes, bytes]) -> int | None:
    """The declared Content-Length; None when absent. Refused unless a plain number."""
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    if not text.isdigit() or not text.isascii():
        raise Refused(400, "bad_request", "Content-Length must be a non-negative integer")
    return int(text)


@dataclass(frozen=True)
class BodyLimit:
    """The most bytes one request's body may have, and the setting that says so."""

    max_bytes: int
    setting: str

    def check_declared(self, declared: int | None) -> None:
        """Refuse from Content-Length alone, before a byte of the body is read."""
        if declared is not None and declared > self.max_bytes:
            raise Refused(
                413,
                "payload_too_large",
                f"request body is {declared} bytes; the limit is {self.max_bytes} ({self.setting})",
            )

    def exceeded(self) -> Refused:
        """A body without Content-Length that ran over while it streamed in."""
        return Refused(
            413,
            "payload_too_large",
            f"request body exceeds {self.max_bytes} bytes ({self.setting})",
        )


@dataclass(frozen=True)
class BodyLimits:
    """Uploads (multipart, to routes that take them) stream to disk and may be large; every
    other body (JSON) is parsed whole in memory, so it gets a limit of its own."""

    max_upload_bytes: int
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    upload_setting: str = "max_request_mb"
    json_setting: str = "max_json_mb"

    def for_body(self, media: str, accepted: Collection[str] | None) -> BodyLimit:
        """The limit of a body of `media` to a route that takes `accepted` media types."""
        upload = accepted is not None and media in accepted and not is_json(media)
        if upload:
            return BodyLimit(self.max_upload_bytes, self.upload_setting)
        return BodyLimit(min(self.max_json_bytes, self.max_upload_bytes), self.json_setting)


async def read_body(receive: Receive, limit: BodyLimit) -> bytes | None:
    """The whole body (None if the client left), refused once it runs over the limit."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit.max_bytes:
            raise limit.exceeded()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def check_media_type(
    path: str, media: str, accepted: Collection[str] | None, declares_body: bool
) -> None:
    """415 for a body a route does not take, so a cross-site form (text/plain,
    form-urlencoded) cannot reach a JSON route without a CORS preflight. `declares_body`: a
    Content-Type, a non-zero Content-Length or a chunked body was sent."""
    if accepted is None or not declares_body:
        return
    if media in accepted or (is_json(media) and JSON in accepted):
        return
    raise Refused(
        415,
        "unsupported_media_type",
        f"{path} takes {' or '.join(sorted(accepted))}, "
        f"not {media or 'a body without Content-Type'}",
    )


@dataclass(frozen=True)
class SameSitePolicy:
    """Which browsers may change state here: pages of this server's own origin and of the
    configured CORS origins. A multipart upload is a "simple" request (no preflight), so
    without this any site could make a visitor's browser run inference on this server.
    Clients that are not browsers (no Origin, no Sec-Fetch-Site) are not affected."""

    allowed_origins: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_origins(cls, origins: Collection[str]) -> SameSitePolicy:
        return cls(frozenset(origin.strip().rstrip("/").lower() for origin in origins))

    def check(self, method: str, headers: Mapping[bytes, bytes]) -> None:
        if method not in BODY_METHODS:
            return
        fetch_site = headers.get(b"sec-fetch-site", b"").decode("latin-1").strip().lower()
        if fetch_site in ("same-origin", "none"):  # set by the browser; no page can forge it
            return
        raw_origin = headers.get(b"origin")
        if raw_origin is None:
            if fetch_site in ("cross-site", "same-site"):
                raise _cross_site(f"Sec-Fetch-Site: {fetch_site}")
            return
        origin = raw_origin.decode("latin-1").strip().rstrip("/").lower()
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return
        if not _names_host(origin, host):
            raise _cross_site(f"Origin {origin[:200]}")


def _names_host(origin: str, host: str) -> bool:
    """Whether `origin` is this server as the browser reached it (its Host header). The
    scheme is not compared: behind a TLS proxy, and on a Ray replica, the server sees http
    while the page is https; a page on the other scheme would have to be on this very host."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    default_port = _DEFAULT_PORTS.get(parts.scheme)
    if default_port is None or not host:
        return False
    return parts.netloc == host.removesuffix(default_port)


def _cross_site(what: str) -> Refused:
    return Refused(
        403,
        "cross_site_request",
        f"cross-site browser requests may not change state here ({what}); "
        "list the page's origin in cors_origins to allow it",
    )
