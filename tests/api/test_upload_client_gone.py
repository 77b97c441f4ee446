"""A client that leaves in the middle of its multipart upload is a 499 (request_cancelled), as
any other client that leaves is: not a 500 with a stack trace in the log and the metrics.
Real server (the package's), raw sockets that hang up after part of the declared body."""

from __future__ import annotations

import json
import re
import socket
import time
from urllib.parse import urlparse

import httpx

from zooserve.api.server import BackgroundServer

BOUNDARY = "zooserve-gone"


def _statuses(client: httpx.Client, route: str) -> dict[str, float]:
    """zooserve_requests_total per status for POST `route`."""
    pattern = re.compile(
        r"^zooserve_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE
    )
    counts: dict[str, float] = {}
    for match in pattern.finditer(client.get("/metrics").text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("route") == route and labels.get("method") == "POST":
            status = labels["status"]
            counts[status] = counts.get(status, 0) + float(match["value"])
    return counts


def _upload_then_hang_up(url: str, sent_bytes: int) -> None:
    """Declare a 20 MB multipart upload, send its head and `sent_bytes` of the file, leave."""
    parts = urlparse(url)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="request"\r\n\r\n'
        + json.dumps({"frame_numbers": [0]})
        + f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        'filename="clip.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()
    request = (
        f"POST /api/detect HTTP/1.1\r\nHost: {parts.hostname}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {20_000_000}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(request + head + b"\x00" * sent_bytes)


def test_a_client_leaving_mid_upload_is_a_499_not_a_500(
    server: BackgroundServer, client: httpx.Client
) -> None:
    before = _statuses(client, "/api/detect")
    for _ in range(3):
        _upload_then_hang_up(server.url, 256 * 1024)
    after = before
    for _ in range(300):  # a bound, not a timing assertion: the server records each one
        after = _statuses(client, "/api/detect")
        if sum(after.values()) >= sum(before.values()) + 3:
            break
        time.sleep(0.1)
    assert after.get("499", 0) == before.get("499", 0) + 3, after
    assert after.get("500", 0) == before.get("500", 0), after
    assert client.get("/health").json()["status"] == "healthy"
