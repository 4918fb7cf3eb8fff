"""Patient pages meet WCAG 2.1 AA as far as a machine can tell, in a real
browser (Debian's Chromium through Playwright).

axe-core (package.json) runs on every patient page in every state — the
help steps, the form's first question (empty and in error), the rest of the
form (empty, with errors and with a family member's error), the too-early
page, the confirmation, the page of a failed CSRF check, the status page at
each step, the rate-limited page and the 404 page — at phone and desktop
width, and finds
nothing serious or critical. Keyboard-only use is driven key by key: the skip
link, the order of the fields, focus on the error summary after a failed
submit and links from it to the fields, an accessible name for every field.

The app runs as gunicorn with production settings (DEBUG off, so the real 404
page is served) on SQLite with the filesystem broker: no PostgreSQL, Redis
or worker is needed to render pages. The requests behind the status pages are
filed and moved through requests_app.services by one ``manage.py shell``.
Screenshots of every state are saved under var/screenshots/a11y/.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .support.chromium import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402

from .support.chromium import (  # noqa: E402
    BLOCKING_IMPACTS,
    DESKTOP,
    PHONE,
    VIEWPORTS,
    PageProblems,
    axe_violations,
    describe_violations,
    screenshot_folder,
)
from .support.processes import run_manage, serving_gunicorn, sqlite_site_env  # noqa: E402

pytest_plugins = ["tests.support.chromium"]

expect.set_options(timeout=10_000)

# Files the app's database, collects its static files (the manifest storage
# of DEBUG off needs them) and puts one request at each public step.
SETUP = """
import json
from datetime import date, timedelta
from django.contrib.auth import get_user_model
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
from requests_app import practice_time, services

staff = get_user_model().objects.create_user(username="ada", first_name="Ada", last_name="Staff")


def filed(n):
    return services.reset_submit(submission=services.Submission(
        first_name="Ana", last_name=f"Example{n}", date_of_birth=date(1980, 1, n), email=f"ana{n}@example.com",
        phone="+16175550142", appointment_date=practice_time.practice_today() - timedelta(days=5),
        reason="link_expired")).reset


received, verifying, reset, closed = filed(1), filed(2), filed(3), filed(4)
services.reset_start(reset_id=verifying.pk, actor=staff)
services.reset_start(reset_id=reset.pk, actor=staff)
services.reset_record_identity_check(reset_id=reset.pk, actor=staff, dob=True, phone=True, email=False)
services.reset_resolve(reset_id=reset.pk, actor=staff, outcome="reinvited")
services.reset_close(reset_id=closed.pk, actor=staff, reason="withdrawn")
steps = {"received": received, "verifying": verifying, "reset": reset, "closed": closed}
print("STATUS_URLS=" + json.dumps({step: r.get_status_url() for step, r in steps.items()}))
"""


@dataclass(frozen=True)
class Site:
    url: str
    status_urls: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app under gunicorn (one process, so the in-memory rate-limit
    counters are shared by every request), with a request at each step."""
    root = tmp_path_factory.mktemp("a11y")
    env, port = sqlite_site_env(
        root,
        STATIC_ROOT=str(root / "static"),
        # The per-address limit is how the rate-limited page is reached; the
        # address comes from X-Real-IP (from the trusted proxy, 127.0.0.1),
        # so that page's posts do not use up the other pages' address.
        CLIENT_IP_HEADER="X-Real-IP",
        SUBMIT_RATE_PER_ADDRESS="5/h",
    )
    output = run_manage("shell", "-c", SETUP, env=env).stdout
    match = re.search(r"^STATUS_URLS=(.*)$", output, re.MULTILINE)
    assert match, f"the setup printed no status links:\n{output}"
    with serving_gunicorn(env=env, root=root, port=port) as url:
        yield Site(url=url, status_urls=json.loads(match[1]))


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_folder("a11y")


# --- Getting a page into each state ----------------------------------------------


def practice_today() -> date:
    """Today on the practice's clock (PRACTICE_TIME_ZONE's default)."""
    return datetime.now(ZoneInfo("America/New_York")).date()


_addresses = itertools.count(1)


def own_address(page: Page) -> None:
    """Posts from this page come from an address of their own (X-Real-IP,
    believed from the trusted proxy, 127.0.0.1): the other pages' posts do
    not use up its SUBMIT_RATE_PER_ADDRESS (5/h here), nor its theirs."""
    n = next(_addresses)
    page.set_extra_http_headers({"X-Real-IP": f"198.51.100.{n % 250 + 1}" if n < 250 else f"192.0.2.{n % 250 + 1}"})


def answer_visit(page: Page, visit: date) -> None:
    """The first question of /reset/: the visit date, in its boxes; Continue."""
    question = page.get_by_role("group", name="When was your visit?")
    question.get_by_label("Month").fill(str(visit.month))
    question.get_by_label("Day").fill(str(visit.day))
    question.get_by_label("Year").fill(str(visit.year))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()


def fill_valid_form(page: Page, *, email: str | None = None, visit: date | None = None) -> None:
    """/reset/ from its first question: the visit date (five days ago
    unless given), then, on the rest of the form, the patient's part, all
    valid (no family member)."""
    answer_visit(page, visit or practice_today() - timedelta(days=5))
    heading(page, "Ask us to reset your portal access")
    values = {
        "first_name": "Ana",
        "last_name": "Example",
        "date_of_birth_month": "4",
        "date_of_birth_day": "23",
        "date_of_birth_year": "1980",
        "email": email or f"ana-{secrets.token_hex(5)}@example.com",
        "phone": "555-201-3344",
    }
    for name, value in values.items():
        page.locator(f"[name='{name}']").fill(value)
    page.get_by_label("The invitation link expired").check()


def send(page: Page) -> None:
    page.get_by_role("button", name="Send my request").click()
    page.wait_for_load_state()


def heading(page: Page, text: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(text)


def guide(page: Page, site: Site) -> None:
    page.goto("/")
    heading(page, "Can\u2019t get into your patient portal?")


def form_empty(page: Page, site: Site) -> None:
    page.goto("/reset/")
    heading(page, "When was your visit?")


def form_visit_error(page: Page, site: Site) -> None:
    form_empty(page, site)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_contain_text("Enter the date of your visit")


def form_details(page: Page, site: Site) -> None:
    form_empty(page, site)
    answer_visit(page, practice_today() - timedelta(days=5))
    heading(page, "Ask us to reset your portal access")


def form_errors(page: Page, site: Site) -> None:
    form_details(page, site)
    send(page)
    expect(page.get_by_role("alert")).to_contain_text("Please correct the following:")


def form_family_error(page: Page, site: Site) -> None:
    form_empty(page, site)
    fill_valid_form(page)
    page.get_by_role("group", name="Does anyone else use this login?").get_by_label("Yes").check()
    page.get_by_role("group", name="Family member 1").get_by_label("First name").fill("Ilsabet")
    send(page)
    expect(page.get_by_role("alert")).to_contain_text("Family member 1: Enter their last name")
    expect(page.locator("[name='first_name']")).not_to_have_attribute("aria-invalid", "true")


def too_early(page: Page, site: Site) -> None:
    form_empty(page, site)
    answer_visit(page, practice_today() - timedelta(days=1))
    heading(page, "Your invitation link may still be on its way")


def confirmation(page: Page, site: Site) -> None:
    form_empty(page, site)
    fill_valid_form(page)
    send(page)
    heading(page, "Thank you — we have your request")


def csrf_failure(page: Page, site: Site) -> None:
    # An old tab: its CSRF cookie is gone by the time the form is sent.
    form_empty(page, site)
    fill_valid_form(page)
    page.context.clear_cookies(name="csrftoken")
    send(page)
    heading(page, "Please send the form again")
    expect(page.locator("[name='first_name']")).to_have_value("Ana")


def status(step: str, words: str) -> Callable[[Page, Site], None]:
    def reach(page: Page, site: Site) -> None:
        page.goto(site.status_urls[step])
        heading(page, "Your portal access request")
        expect(page.locator("[aria-current='step']")).to_have_text(re.compile(rf"^\s*{words}\s*$"))

    return reach


def rate_limited(page: Page, site: Site) -> None:
    # One client address past SUBMIT_RATE_PER_ADDRESS (5/h here): five
    # posts (each answer to the first question is one), then the sixth,
    # sent from the page, is refused.
    page.set_extra_http_headers({"X-Real-IP": f"203.0.113.{secrets.randbelow(250) + 1}"})
    for _ in range(6):
        form_empty(page, site)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            answer_visit(page, practice_today() - timedelta(days=5))
        if answer.value.status == 429:
            break
    assert answer.value.status == 429
    heading(page, "Please wait a little")


def not_found(page: Page, site: Site) -> None:
    response = page.goto("/status/not-a-real-token/")
    assert response is not None and response.status == 404
    heading(page, "Page not found")


STATES: dict[str, Callable[[Page, Site], None]] = {
    "guide": guide,
    "form-empty": form_empty,
    "form-visit-error": form_visit_error,
    "form-details": form_details,
    "form-errors": form_errors,
    "form-family-error": form_family_error,
    "too-early": too_early,
    "confirmation": confirmation,
    "csrf-failure": csrf_failure,
    "status-received": status("received", "Received"),
    "status-verifying": status("verifying", "Being verified"),
    "status-reset": status("reset", "Access reset"),
    "status-closed": status("closed", "Closed"),
    "rate-limited": rate_limited,
    "not-found": not_found,
}


# --- axe-core on every state ------------------------------------------------------


@pytest.mark.parametrize("state", list(STATES))
def test_it_finds_no_serious_accessibility_violation_at_phone_or_desktop_width(
    site: Site, new_page: Callable[..., Page], axe_script: Path, shots: Path, state: str
) -> None:
    # axe is injected as a <script> element, which the pages' CSP refuses.
    page = new_page(viewport=PHONE, bypass_csp=True, base_url=site.url)
    own_address(page)
    STATES[state](page, site)
    expect(page.locator("html")).to_have_attribute("lang", re.compile(r"^en(-[A-Za-z]+)?$"))

    found = {}
    for width, viewport in VIEWPORTS.items():
        page.set_viewport_size(viewport)  # type: ignore[arg-type]
        page.screenshot(path=str(shots / f"{state}-{width}.png"), full_page=True, animations="disabled", caret="hide")
        found[width] = axe_violations(page, axe_script)

    report = "\n".join(
        f"axe-core on {state} at {width} width ({page.url}):\n{describe_violations(violations)}"
        for width, violations in found.items()
        if violations
    )
    blocking = [v["id"] for violations in found.values() for v in violations if v.get("impact") in BLOCKING_IMPACTS]
    assert not blocking, report
    if report:
        print(report)  # minor and moderate findings, shown with -rP or on failure


# --- Keyboard-only use --------------------------------------------------------------


def focused(page: Page) -> dict[str, str]:
    """What has the keyboard focus: tag, id, name, text, whether it is
    inside <main>, and whether a focus ring (outline or shadow) marks it."""
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            const ring = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
                || style.boxShadow !== "none";
            return {
                tag: el.tagName.toLowerCase(),
                id: el.id || "",
                name: el.getAttribute("name") || "",
                text: (el.innerText || el.value || "").trim().slice(0, 60),
                inMain: String(!!el.closest("main")),
                ring: String(ring),
            };
        }"""
    )


def tab_stops(page: Page, *, limit: int = 80) -> list[dict[str, str]]:
    """Press Tab from the top of the page until focus comes round again;
    a date field's parts (month, day, year, picker) count as one stop."""
    stops: list[dict[str, str]] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if now["tag"] == "body" or (stops and now == stops[0]):
            break
        if not stops or (now["id"], now["name"]) != (stops[-1]["id"], stops[-1]["name"]) or not now["id"]:
            stops.append(now)
    return stops


@pytest.mark.parametrize("path", ["/", "/reset/"])
def test_it_offers_a_skip_link_first_that_moves_focus_to_the_main_content(
    site: Site, new_page: Callable[..., Page], path: str
) -> None:
    page = new_page(viewport=DESKTOP, base_url=site.url)
    page.goto(path)

    page.keyboard.press("Tab")

    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    box = skip.bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 10, f"the focused skip link is not shown: {box}"
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()
    page.keyboard.press("Tab")
    assert focused(page)["inMain"] == "true", f"Tab after the skip link went to {focused(page)}"


def test_it_lets_a_keyboard_user_reach_every_field_in_order_with_a_visible_focus(
    site: Site, new_page: Callable[..., Page]
) -> None:
    problems = PageProblems()
    page = new_page(viewport=DESKTOP, base_url=site.url, problems=problems)
    own_address(page)
    page.goto("/reset/")

    # The first question: the visit date's three boxes, then Continue.
    first = tab_stops(page)
    names = [stop["name"] or stop["id"] or stop["text"] for stop in first if stop["inMain"] == "true"]
    expected = ["appointment_date_month", "appointment_date_day", "appointment_date_year", "Continue"]
    assert [n for n in names if n in expected] == expected, f"tab order in <main>: {names}"

    answer_visit(page, practice_today() - timedelta(days=5))
    rest = tab_stops(page)

    names = [stop["name"] or stop["id"] or stop["text"] for stop in rest if stop["inMain"] == "true"]
    expected = [
        "first_name",
        "last_name",
        "date_of_birth_month",
        "date_of_birth_day",
        "date_of_birth_year",
        "email",
        "phone",
        "reason",
        "details",
        "others_use_login",
        "Send my request",
    ]
    assert [n for n in names if n in expected] == expected, f"tab order in <main>: {names}"
    # The family rows wait for "Yes".
    assert not [n for n in names if n.startswith("family-")], f"tab order in <main>: {names}"
    for stops in (first, rest):
        names = [stop["name"] for stop in stops]
        assert "website" not in names, "the bots' honeypot field takes keyboard focus"
        unmarked = [stop for stop in stops if stop["ring"] != "true"]
        assert not unmarked, f"focus is not visible on: {unmarked}"
    assert problems.messages == [], "\n".join(problems.messages)


def test_it_lets_a_keyboard_user_choose_a_reason_and_add_a_family_member(
    site: Site, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport=DESKTOP, base_url=site.url)
    own_address(page)
    form_details(page, site)
    page.locator("[name='date_of_birth_year']").focus()

    # From the date of birth's last box, past email and phone, to the reasons.
    for _ in range(20):
        page.keyboard.press("Tab")
        if focused(page)["name"] == "reason":
            break
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("I never received the invitation email")).to_be_checked()
    # On to "Does anyone else use this login?": Space chooses "Yes", and
    # the first family member's row follows it.
    for _ in range(5):
        page.keyboard.press("Tab")
        if focused(page)["name"] == "others_use_login":
            break
    page.keyboard.press("Space")
    expect(page.get_by_role("radio", name="Yes")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("group", name="Family member 1").get_by_label("First name")).to_be_focused()
    add = page.get_by_role("button", name="Add another family member")
    add.focus()
    page.keyboard.press("Enter")

    member = page.get_by_role("group", name="Family member 2")
    expect(member.get_by_label("First name")).to_be_focused()
    expect(page.get_by_role("status")).to_have_text("Family member 2 added.")
    page.keyboard.type("Orrin")
    expect(page.locator("[name='family-1-first_name']")).to_have_value("Orrin")
    expect(page.locator("[name='family-TOTAL_FORMS']")).to_have_value("2")


def test_it_moves_focus_to_the_error_summary_whose_links_lead_to_the_fields(
    site: Site, new_page: Callable[..., Page]
) -> None:
    problems = PageProblems()  # under the real CSP
    page = new_page(viewport=DESKTOP, base_url=site.url, problems=problems)
    own_address(page)
    form_details(page, site)
    page.get_by_role("group", name="About you").get_by_label("First name").focus()

    page.keyboard.press("Enter")  # sends the empty form, as Enter in a field does
    page.wait_for_load_state()

    summary = page.get_by_role("alert")
    expect(summary).to_be_focused()
    expect(page).to_have_title(re.compile(r"^Error:"))
    links = summary.get_by_role("link")
    expect(links).to_have_text(
        [
            "Enter your first name",
            "Enter your last name",
            "Enter your date of birth",
            "Enter your email address",
            "Enter your phone number",
            "Choose what went wrong",
        ]
    )
    for i in range(links.count()):
        link = links.nth(i)
        href = link.get_attribute("href") or ""
        assert href.startswith("#"), href
        field = page.locator(f"[id='{href[1:]}']")
        expect(field).to_have_count(1)
        assert field.evaluate("el => el.matches('input, select, textarea')"), f"{href} is not a form field"
        expect(field).to_have_attribute("aria-invalid", "true")
        # The link says what to do ("Enter your phone number"), the same
        # message a screen reader reads out with the field, or with the
        # group it is the first input of (a date's boxes, radio buttons).
        target = field
        if field.get_attribute("type") == "radio" or (field.get_attribute("name") or "").endswith("_month"):
            target = field.locator("xpath=ancestor::fieldset[1]")
        expect(target).to_have_accessible_name(re.compile(r"\w"))
        expect(target).to_have_accessible_description(re.compile(re.escape(link.inner_text())))

    links.first.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#id_first_name$"))
    expect(page.locator("#id_first_name")).to_be_focused()
    expect(page.locator("#id_first_name")).to_be_in_viewport()
    links.nth(2).click()
    expect(page.locator("#id_date_of_birth_month")).to_be_focused()
    assert problems.messages == [], "\n".join(problems.messages)


def test_it_gives_every_field_an_accessible_name_and_hides_the_honeypot(
    site: Site, new_page: Callable[..., Page]
) -> None:
    problems = PageProblems()  # under the real CSP
    page = new_page(viewport=DESKTOP, base_url=site.url, problems=problems)
    own_address(page)
    form_family_error(page, site)
    page.get_by_role("button", name="Add another family member").click()

    controls = page.locator("main input:not([type=hidden]), main select, main textarea, main button")
    expect(controls.first).to_be_attached()
    checked = 0
    for i in range(controls.count()):
        control = controls.nth(i)
        if control.get_attribute("name") == "website":
            continue
        expect(control).to_have_accessible_name(re.compile(r"\w"))
        checked += 1
    assert checked >= 20, f"only {checked} controls found"
    labelled = {
        "first_name": "First name",
        "email": "Email address the portal invitation was sent to",
        "phone": "Phone number",
        "date_of_birth_month": "Month",
        "family-1-date_of_birth_year": "Year",
    }
    for name, label in labelled.items():
        expect(page.locator(f"[name='{name}']")).to_have_accessible_name(label)
    # A date is a group named by its legend, described by its hint (and error).
    born = page.locator("#div_id_date_of_birth fieldset")
    expect(born).to_have_accessible_name("Date of birth")
    expect(born).to_have_accessible_description(re.compile("For example, 4 23 1980"))
    expect(page.locator("[name='phone']")).to_have_accessible_description(re.compile("call or text this number"))
    expect(page.locator("[name='family-0-last_name']")).to_have_accessible_description(
        re.compile("Enter their last name")
    )
    # Bots fill it in; people, screen readers and the Tab key never meet it.
    expect(page.locator("[name='website']")).to_be_hidden()
    expect(page.get_by_role("textbox", name="Leave this field empty")).to_have_count(0)
    assert problems.messages == [], "\n".join(problems.messages)
