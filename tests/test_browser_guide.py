"""The guided help in a real browser (Debian's Chromium through Playwright),
in English and in Spanish, on a phone (390x844) and a laptop: every branch
of the tree walked from / by clicking the answers to the right end step;
the way to the reset request and the portal's login link on the first
screen without scrolling; Back; "Did this solve it?" answered; the whole
walk again with JavaScript off; axe-core finding nothing on any page.

The Spanish catalogue may not have the guide's strings yet: the Spanish walk
asserts URLs, the page's language and its structure, never its words.

The app runs as gunicorn with production settings (DEBUG off, the real CSP)
on SQLite; no PostgreSQL, Redis or worker is needed. Screenshots of every
page in both languages at both widths: var/screenshots/guide/.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from requests_app import guide_tree

from .support.chromium import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402

from .support.chromium import (  # noqa: E402
    PHONE,
    VIEWPORTS,
    PageProblems,
    axe_violations,
    describe_violations,
    screenshot_folder,
    screenshots_at_both_widths,
)
from .support.processes import run_manage, serving_gunicorn, sqlite_site_env  # noqa: E402

pytest_plugins = ["tests.support.chromium"]

expect.set_options(timeout=10_000)

APOSTROPHE = "\N{RIGHT SINGLE QUOTATION MARK}"
LANGUAGES = ["en", "es"]
PATHS = list(guide_tree.paths())
ENDS = [slug for slug, step in guide_tree.STEPS.items() if step.is_end]
# The environment each site runs with, for manage.py against its database.
site_env: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under gunicorn, one process (the in-memory rate-limit counters
    are shared by every request), on a fresh SQLite database."""
    root = tmp_path_factory.mktemp("guide")
    env, port = sqlite_site_env(root, STATIC_ROOT=str(root / "static"))
    run_manage("migrate", "--noinput", "--verbosity=0", env=env)
    run_manage("collectstatic", "--noinput", "--verbosity=0", env=env)
    with serving_gunicorn(env=env, root=root, port=port) as url:
        site_env[url] = env
        yield url


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_folder("guide")


# --- Helpers ----------------------------------------------------------------------------


def open_start(page: Page, site: str, language: str) -> None:
    """/ in ``language``, chosen with the switch (kept in the language cookie)."""
    page.goto(f"/?lang={language}")
    expect(page).to_have_url(f"{site}/")
    in_language(page, language)


def in_language(page: Page, language: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", language)


def step_url(site: str, slug: str) -> str:
    return f"{site}/help/{slug}/"


def look_at(page: Page, axe_script: Path, shots: Path, name: str) -> None:
    """Screenshots at phone and desktop width, and axe-core at both: no
    violation of any impact."""
    screenshots_at_both_widths(page, shots, name)
    original = page.viewport_size
    found = {}
    try:
        for width, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)  # type: ignore[arg-type]
            found[width] = axe_violations(page, axe_script)
    finally:
        if original is not None:
            page.set_viewport_size(original)  # type: ignore[arg-type]
    report = "\n".join(
        f"axe-core on {name} at {width} width ({page.url}):\n{describe_violations(v)}"
        for width, v in found.items()
        if v
    )
    assert not report, report


def in_first_screen(page: Page, selector: str) -> None:
    """The element is shown whole within the viewport, without scrolling."""
    element = page.locator(selector)
    expect(element).to_be_visible()
    box = element.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert page.evaluate("() => window.scrollY") == 0
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], f"{selector} at {box} in {viewport}"
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], f"{selector} at {box} in {viewport}"


def answer_link(slug: str) -> str:
    return f'main a.help-answer[href="/help/{slug}/"]'


# --- The first screen -----------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_shows_the_way_to_the_reset_request_and_the_login_link_without_scrolling_on_a_phone(
    site: str, new_page: Callable[..., Page], language: str
) -> None:
    page = new_page(viewport=PHONE, base_url=site)
    open_start(page, site, language)

    in_first_screen(page, "main h1")
    in_first_screen(page, "main a.btn-start")
    in_first_screen(page, 'main a[href="/reset/"]')
    in_first_screen(page, 'main a[href="https://www.patientfusion.com/"]')
    expect(page.locator("main a.btn-start")).to_have_attribute("href", "/help/other-doctor/")
    if language == "en":
        expect(page.get_by_role("link", name="ask us to reset my access")).to_have_text(
            f"It{APOSTROPHE}s more than 48 hours since my visit: ask us to reset my access"
        )

    page.locator('main a[href="/reset/"]').click()
    expect(page).to_have_url(f"{site}/reset/")
    in_language(page, language)


# --- Every branch, clicked --------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_walks_every_branch_of_the_tree_to_its_end_step(
    site: str, new_page: Callable[..., Page], axe_script: Path, shots: Path, language: str
) -> None:
    # axe is injected as a <script> element, which the pages' CSP refuses.
    page = new_page(viewport=PHONE, bypass_csp=True, base_url=site)
    looked_at: set[str] = set()
    ended: list[str] = []

    for path in PATHS:
        open_start(page, site, language)
        if "start" not in looked_at:
            look_at(page, axe_script, shots, f"{language} 00 start")
            looked_at.add("start")
        page.locator("main a.btn-start").click()
        for here, there in itertools.pairwise(path):
            expect(page).to_have_url(step_url(site, here))
            in_language(page, language)
            if here not in looked_at:
                look_at(page, axe_script, shots, f"{language} {len(looked_at):02d} {here}")
                looked_at.add(here)
            # On a phone the question and all its answers fit the first screen.
            answers = page.locator("main a.help-answer")
            expect(answers).to_have_count(len(guide_tree.STEPS[here].answers))
            in_first_screen(page, answer_link(guide_tree.STEPS[here].answers[-1].next))
            page.locator(answer_link(there)).click()

        end = path[-1]
        expect(page).to_have_url(step_url(site, end))
        in_language(page, language)
        form = page.locator(f'main form[method="post"][action="/help/{end}/feedback/"]')
        expect(form).to_have_count(1)
        expect(form.locator('button[name="answer"]')).to_have_count(2)
        expect(form.locator('button[value="yes"]')).to_be_visible()
        expect(form.locator('button[value="no"]')).to_be_visible()
        if end not in looked_at:
            look_at(page, axe_script, shots, f"{language} {len(looked_at):02d} {end}")
            looked_at.add(end)
        ended.append(end)

    assert sorted(ended) == sorted(ENDS)
    assert looked_at == {"start", *guide_tree.STEPS}


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_goes_back_a_step_with_the_back_link_and_with_the_browser_s_back(
    site: str, new_page: Callable[..., Page], language: str
) -> None:
    page = new_page(viewport=PHONE, base_url=site)
    [deepest] = [path for path in PATHS if path[-1] == "password-help"]
    open_start(page, site, language)
    page.locator("main a.btn-start").click()
    for there in deepest[1:]:
        page.locator(answer_link(there)).click()
    expect(page).to_have_url(step_url(site, "password-help"))

    page.go_back()
    expect(page).to_have_url(step_url(site, "where-stuck"))
    page.go_forward()
    for previous in reversed(deepest[:-1]):
        page.locator("main a.back-link").click()
        expect(page).to_have_url(step_url(site, previous))
        in_language(page, language)
    page.locator("main a.back-link").click()
    expect(page).to_have_url(f"{site}/")


# --- "Did this solve it?" ---------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_thanks_the_patient_for_an_answer_and_counts_it(
    site: str, new_page: Callable[..., Page], axe_script: Path, shots: Path, language: str
) -> None:
    page = new_page(viewport=PHONE, bypass_csp=True, base_url=site)
    open_start(page, site, language)

    page.goto("/help/same-login/")
    page.locator('main button[value="yes"]').click()
    expect(page).to_have_url(f"{site}/help/same-login/solved/")
    in_language(page, language)
    look_at(page, axe_script, shots, f"{language} 90 same-login solved")

    for slug in ("invitation-email", "request-reset", "security-code"):
        page.goto(f"/help/{slug}/")
        page.locator('main button[value="no"]').click()
        expect(page).to_have_url(f"{site}/help/{slug}/not-solved/")
        in_language(page, language)
        look_at(page, axe_script, shots, f"{language} 91 {slug} not solved")
    # After "No" on the security code: the next step of the guide.
    expect(page.locator('main a[href="/help/password-help/"]')).to_be_visible()
    # The language the patient picked, and nothing else.
    assert {c["name"] for c in page.context.cookies()} <= {"django_language"}

    counted = run_manage(
        "shell",
        "-c",
        "import json; from requests_app.models import HelpFeedback; "
        "print('COUNTS=' + json.dumps(sorted((r.step, r.answer, r.count) for r in HelpFeedback.objects.all())))",
        env=site_env[site],
    ).stdout
    match = re.search(r"^COUNTS=(.*)$", counted, re.MULTILINE)
    assert match, counted
    rows = {(step, value): count for step, value, count in json.loads(match[1])}
    assert rows[("same-login", "yes")] >= 1
    assert rows[("request-reset", "no")] >= 1


# --- Without JavaScript, under the real CSP -------------------------------------------


def test_it_works_without_javascript_from_the_start_to_the_thank_you(site: str, new_page: Callable[..., Page]) -> None:
    problems = PageProblems()
    page = new_page(viewport=PHONE, base_url=site, problems=problems, java_script_enabled=False)

    for path in PATHS:
        page.goto("/")
        page.locator("main a.btn-start").click()
        for there in path[1:]:
            page.locator(answer_link(there)).click()
        expect(page).to_have_url(step_url(site, path[-1]))
    page.locator('main button[value="no"]').click()
    expect(page).to_have_url(re.compile(r"/help/[a-z-]+/not-solved/$"))

    assert problems.messages == [], "\n".join(problems.messages)
    assert page.context.cookies() == []
