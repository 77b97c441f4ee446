"""The cross-site upload attack in a real headless Chromium: a page on another site
(http://localhost:PORT, served here) makes the browser post a multipart upload to zooserve
(http://127.0.0.1:PORT, no API key: the default). Multipart is a "simple" request, so the
browser sends it without a preflight; the server must refuse it before any model runs. The
dashboard's own page, same-origin, still runs the same request."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.api.test_cross_site import face_runs
from tests.api.test_uploads import face_only_config
from tests.ui.test_dashboard import browser  # noqa: F401  (the shared Chromium fixture)
from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

#: Run in a page: upload a PNG (base64) to `target` as the try-it panel does; the status.
UPLOAD_SCRIPT = """async ([target, mode, png]) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("file", new Blob([bytes], {type: "image/png"}), "a.png");
  form.append("request", JSON.stringify({model: "face"}));
  const response = await fetch(target + "/api/detect", {method: "POST", mode, body: form});
  return response.status;
}"""


@pytest.fixture(scope="module")
def zooserve(media_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = face_only_config(tmp_path_factory.mktemp("browser-csrf"), media_root)
    with BackgroundServer(load_config(path)) as server:
        yield server.url


@pytest.fixture(scope="module")
def other_site(media_root: Path) -> Iterator[str]:
    """Another site (localhost, not 127.0.0.1): serves a folder listing as its page."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(media_root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


def refusals(url: str) -> int:
    """Requests the service layer refused with 403 (before any route ran)."""
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("zooserve_requests_total{") and 'status="403"' in line:
            return int(float(line.split()[-1]))
    return 0


def test_a_page_on_another_site_cannot_make_the_browser_run_inference(
    browser: Browser,  # noqa: F811
    zooserve: str,
    other_site: str,
    media_root: Path,
) -> None:
    png = base64.b64encode((media_root / "astronaut.png").read_bytes()).decode()
    with httpx.Client(base_url=zooserve, timeout=60) as client:
        runs, refused = face_runs(client), refusals(zooserve)
        page: Page = browser.new_page()
        try:
            page.goto(other_site + "/")
            # no-cors: the attacker cannot read the answer, but the request is sent
            assert page.evaluate(UPLOAD_SCRIPT, [zooserve, "no-cors", png]) == 0
            assert face_runs(client) == runs  # no model ran on the file
            assert refusals(zooserve) == refused + 1  # it did arrive, and was refused

            page.goto(zooserve + "/ui")  # the dashboard's own origin
            assert page.evaluate(UPLOAD_SCRIPT, [zooserve, "same-origin", png]) == 200
            assert face_runs(client) == runs + 1
        finally:
            page.close()
