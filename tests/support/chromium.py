"""Real-browser tests: Debian's Chromium driven by Playwright's Python package,
and axe-core (the npm package pinned in package.json) for the accessibility
check.

A test module loads these fixtures with ``pytest_plugins`` and uses
``chromium`` (one browser per module) and ``new_page`` (a page in a fresh
context of its own per test: no cookies or storage carried over). Without
/usr/bin/chromium, the playwright package or node_modules/axe-core the tests
skip, saying how to get it, or fail when ``REQUIRE_SERVICES=1`` (CI, see
.ci/run, which installs Chromium; ``make test`` runs ``npm ci``).

Playwright's own browser downloads are never used (``playwright install``
cannot reach its download site here): Chromium is Debian's package.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import REPO
from .requirements import service_missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, Response

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
AXE_SCRIPT = REPO / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "var" / "screenshots"

# The two widths every page is looked at: a small phone and a laptop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}

# Patient pages are in English for an English-speaking browser; the
# language a context asks for is pinned so that text assertions hold.
LOCALE = "en-US"
TIMEZONE = "America/New_York"


def require_playwright() -> None:
    """At the top of a test module, before importing playwright: skip the
    module (or fail it under REQUIRE_SERVICES=1) when the package is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        why = f"the Python package cannot be imported ({exc}); pip install -e '.[dev]'"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"playwright is required (REQUIRE_SERVICES=1) but {why}", pytrace=False)
        pytest.skip(
            f"playwright is not available: {why} (set REQUIRE_SERVICES=1 to make this a failure)",
            allow_module_level=True,
        )


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's Chromium (``apt-get install chromium``)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        service_missing("Chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core's browser bundle, from node_modules (``npm ci``)."""
    if not AXE_SCRIPT.is_file():
        how = "run `npm ci` in the checkout" if shutil.which("npm") else "install Node.js and npm, then `npm ci`"
        service_missing("axe-core", f"{AXE_SCRIPT.relative_to(REPO)} is missing ({how})")
    return AXE_SCRIPT


@pytest.fixture(scope="module")
def chromium(chromium_executable: Path) -> Iterator[Browser]:
    """One headless Chromium for the whole test module."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_missing("playwright", f"the Python package cannot be imported ({exc}); pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(chromium_executable), args=CHROMIUM_ARGS, headless=True, timeout=30_000
            )
        except PlaywrightError as exc:
            service_missing("Chromium", f"{chromium_executable} did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageProblems:
    """What went wrong in a page that a person would not see in the test's
    assertions: script errors, refused resources (CSP), console errors."""

    messages: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)
        page.on("response", self._on_response)

    def _on_page_error(self, error: Error) -> None:
        self.messages.append(f"script error: {error}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        source = message.location.get("url", "")
        # The browser asks for /favicon.ico by itself on pages that name no
        # icon (Django's admin); that is no error of the page.
        if source.endswith("/favicon.ico"):
            return
        page = message.page.url if message.page else "?"
        self.messages.append(f"console error on {page}: {message.text} ({source or 'no source'})")

    def _on_response(self, response: Response) -> None:
        # A page answering 404 on purpose is the test's business; a
        # stylesheet, script, image or icon that is missing is not.
        if response.status >= 400 and response.request.resource_type != "document":
            self.messages.append(f"{response.status} for {response.request.resource_type} {response.url}")

    def clear(self) -> None:
        self.messages.clear()


class PageFactory:
    """Pages in fresh browser contexts; every context it opened is closed
    when the test ends."""

    def __init__(self, browser: Browser):
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    def __call__(
        self,
        *,
        viewport: dict[str, int] = DESKTOP,
        bypass_csp: bool = False,
        base_url: str | None = None,
        problems: PageProblems | None = None,
        **options: Any,
    ) -> Page:
        context = self.browser.new_context(
            viewport=viewport,  # type: ignore[arg-type]
            locale=LOCALE,
            timezone_id=TIMEZONE,
            bypass_csp=bypass_csp,
            base_url=base_url,
            **options,
        )
        # Nothing a page of ours loads comes from anywhere but the server
        # under test; a wait that hangs fails within a few seconds.
        context.set_default_timeout(10_000)
        context.set_default_navigation_timeout(20_000)
        self.contexts.append(context)
        page = context.new_page()
        if problems is not None:
            problems.watch(page)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


@pytest.fixture
def new_page(chromium: Browser) -> Iterator[Callable[..., Page]]:
    """``new_page(viewport=..., bypass_csp=..., base_url=...)``: a page in a
    browser context of its own."""
    factory = PageFactory(chromium)
    try:
        yield factory
    finally:
        factory.close()


# --- Screenshots ----------------------------------------------------------------


def screenshot_folder(name: str) -> Path:
    """``var/screenshots/<name>/``, emptied: each run leaves only its own."""
    folder = SCREENSHOTS / name
    if folder.exists():
        for old in folder.glob("*.png"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshots_at_both_widths(page: Page, folder: Path, name: str) -> list[Path]:
    """Whole-page screenshots at phone and desktop width, as
    ``<folder>/<name>-phone.png`` and ``-desktop.png``; the page is left at
    the viewport it had."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    original = page.viewport_size
    paths = []
    try:
        for label, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)  # type: ignore[arg-type]
            path = folder / f"{slug}-{label}.png"
            page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
            paths.append(path)
    finally:
        if original is not None:
            page.set_viewport_size(original)
    return paths


# --- axe-core -------------------------------------------------------------------------

BLOCKING_IMPACTS = ("serious", "critical")


def axe_violations(page: Page, axe_script: Path) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now (every rule axe runs by
    default: WCAG 2.0/2.1/2.2 A and AA and best practices) and return its
    violations. The page's context must bypass CSP: the script is injected
    as a <script> element, which the app's CSP rightly refuses."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(axe_script))
    result: dict[str, Any] = page.evaluate(
        """async () => await window.axe.run(document, {resultTypes: ["violations"]})"""
    )
    return list(result["violations"])


def describe_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v.get('impact')}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v.get("nodes", [])[:10]:
            lines.append(f"    at {', '.join(map(str, node.get('target', [])))}")
            summary = (node.get("failureSummary") or "").replace("\n", "\n       ")
            if summary:
                lines.append(f"       {summary}")
            lines.append(f"       html: {node.get('html', '')[:300]}")
    return "\n".join(lines)
