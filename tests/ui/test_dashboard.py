"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a
real server: it shows a model the test loads through the API, streams its load event, and the
try-it panel shows an annotated frame. The screenshot is written for a person to look at."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "ui-key"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (./bootstrap test does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(zoo_config: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(load_config(zoo_config), api_key=KEY) as running:
        yield running


def test_dashboard_shows_models_events_and_an_annotated_frame(
    browser: Browser, server: BackgroundServer, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server.url}/ui")
    page.fill("#apikey", KEY)
    page.dispatch_event("#apikey", "change")
    expect(page.locator('#zoo tr[data-model="face"]')).to_be_visible()

    loaded = httpx.post(
        f"{server.url}/models/load",
        json={"model_id": "face"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert loaded.status_code == 200
    row = page.locator('#zoo tr[data-model="face"]')
    expect(row.locator("td").nth(3)).to_have_text("loaded")
    expect(page.locator("#events")).to_contain_text("load face")
    expect(page.locator("#budget div")).to_contain_text("face")

    page.select_option("#media", "astronaut.png")
    page.select_option("#model", "face")
    page.click("#run")
    image = page.locator("#frames img.annotated")
    expect(image).to_have_count(1)
    expect(page.locator("#status")).to_contain_text("frame 0: 1 (face)")
    assert image.evaluate("img => img.naturalWidth") == 512

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    page.close()
    if os.environ.get("ZOOSERVE_SCREENSHOTS"):
        target = Path(os.environ["ZOOSERVE_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "dashboard.png")


HOSTILE = "<img src=x onerror=alert(1)>.jpg"


def test_hostile_file_name_is_shown_as_text_never_run(
    browser: Browser, server: BackgroundServer, media_root: Path
) -> None:
    """A media file named like markup stays text in the media list and in the error the
    try-it panel shows for it: no element is created from it and no script runs."""
    hostile = media_root / HOSTILE
    hostile.write_bytes(b"not really a jpeg")
    dialogs: list[str] = []
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    refused: list[str] = []  # the page's own script and style must pass its CSP
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    try:
        page.goto(f"{server.url}/ui")
        page.fill("#apikey", KEY)
        page.dispatch_event("#apikey", "change")
        expect(page.locator("#media option", has_text="astronaut.png")).to_have_count(1)
        expect(page.locator("#zoo tr[data-model]").first).to_be_visible()
        assert dialogs == []
        assert page.locator('img[src="x"], [onerror]').count() == 0
        option = page.locator("#media option", has_text=HOSTILE)
        expect(option).to_have_count(1)
        assert option.text_content() == HOSTILE

        page.select_option("#media", HOSTILE)
        page.click("#run")
        expect(page.locator("#status")).to_contain_text("error: ")
        expect(page.locator("#status")).to_contain_text(HOSTILE)
        assert dialogs == []
        assert page.locator('img[src="x"], [onerror]').count() == 0
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # style ran
        assert refused == []
    finally:
        page.close()
        hostile.unlink()


def test_right_column_fits_a_1280_pixel_window(browser: Browser, tmp_path: Path) -> None:
    """At 1280 px the right column (events, jobs) ends inside the window, however long its
    event lines (a long model name): they wrap instead of pushing the column out."""
    from zooserve.catalog import Config

    name = "opencv-frontal-face-cascade-with-a-rather-long-name"
    cascade = {"model_id": "opencv:haarcascade_frontalface_default.xml", "framework": "opencv"}
    config = Config.model_validate(
        {
            "device": "cpu",
            "media_root": str(tmp_path),
            "jobs_db": str(tmp_path / "jobs.sqlite3"),
            "models": {name: {**cascade, "family": "opencv_cascade"}},
        }
    )
    with BackgroundServer(config) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{server.url}/ui")
            expect(page.locator("#zoo tr[data-model]").first).to_be_visible()
            body = {"model_id": name}
            httpx.post(f"{server.url}/models/load", json=body).raise_for_status()
            httpx.post(f"{server.url}/models/unload", json=body).raise_for_status()
            expect(page.locator("#events")).to_contain_text(f"unload {name}")
            for column in ("main > section:nth-of-type(1)", "main > section:nth-of-type(2)"):
                box = page.locator(column).bounding_box()
                assert box is not None and box["x"] + box["width"] <= 1280, (column, box)
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        finally:
            page.close()
