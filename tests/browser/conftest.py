"""Browser tests: Playwright driving Debian's headless Chromium against ``live_server``.

They run with the rest of the suite (``make test``, CI). Without /usr/bin/chromium (``apt-get install chromium``)
they are skipped, saying so. Each page a test visits is kept as a screenshot under ``var/screenshots/<test>/``.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, headless, as root in a container, making no calls of its own (docs: NOTES.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(pytest.mark.skip(reason=f"no Chromium at {CHROMIUM}: apt-get install chromium"))


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real Chromium against the live server (tests/browser)")


@pytest.fixture
def browser():
    """Chromium, started for one test and stopped after it.

    Playwright's sync API keeps an asyncio event loop set in the test's thread while it runs, which Django takes
    for async code: the test's own ORM calls (plain synchronous ones) are allowed explicitly, and the browser never
    outlives the test — while that loop is set, Django's per-context connection objects are new ones, without the
    serialized database the next transactional test restores from."""
    from playwright.sync_api import sync_playwright

    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def page(browser, live_server, request):
    """A fresh browser tab (no cookies) whose relative URLs go to the live server. ``page.snap(name)`` keeps a
    screenshot of the whole page."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    folder = SCREENSHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)  # this run's pages only
    folder.mkdir(parents=True)
    shots = iter(range(1, 100))

    def snap(name: str) -> Path:
        path = folder / f"{next(shots):02d}-{name}.png"
        tab.screenshot(path=path, full_page=True)
        return path

    tab.snap = snap
    yield tab
    context.close()
