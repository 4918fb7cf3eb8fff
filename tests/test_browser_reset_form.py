"""The reset form in a real browser (Debian's Chromium through Playwright),
on a phone (390x844) as most patients use it: eligibility first.

A patient seen today learns it is too early after answering one question;
one whose visit was five days ago reaches the confirmation in two page
loads after it (the rest of the form, then the confirmation). Errors keep
what was typed and put the focus on the summary, whose links lead to the
inputs. The family rows show only after "Yes", with script or without.

The app runs as gunicorn with production settings (DEBUG off) on SQLite
with the filesystem broker, as in tests/test_accessibility.py. Screenshots
of each state, in English and Spanish, at 390x844 and 1440x900, land in
var/screenshots/reset/.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .support.chromium import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402

from .support.chromium import PHONE, PageProblems, screenshot_folder  # noqa: E402
from .support.processes import run_manage, serving_gunicorn, sqlite_site_env  # noqa: E402

pytest_plugins = ["tests.support.chromium"]

expect.set_options(timeout=10_000)

WIDE = {"width": 1440, "height": 900}
SCREENSHOT_SIZES = {"390": PHONE, "1440": WIDE}

SETUP = """
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
"""

# What each language calls what the tests click and read.
WORDS = {
    "en": {
        "question": "When was your visit?",
        "continue": "Continue",
        "month": "Month",
        "day": "Day",
        "year": "Year",
        "too_early": "Your invitation link may still be on its way",
        "form": "Ask us to reset your portal access",
        "send": "Send my request",
        "thanks": "Thank you — we have your request",
        "about_you": "About you",
        "first_name": "First name",
        "last_name": "Last name",
        "dob": "Date of birth",
        "email": "Email address the portal invitation was sent to",
        "phone": "Phone number",
        "reason": "The invitation link expired",
        "others": "Does anyone else use this login?",
        "yes": "Yes",
        "no": "No",
        "csrf": "Please send the form again",
    },
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("reset-form")
    env, port = sqlite_site_env(root, STATIC_ROOT=str(root / "static"))
    run_manage("shell", "-c", SETUP, env=env)
    with serving_gunicorn(env=env, root=root, port=port) as url:
        yield url


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_folder("reset")


def practice_today() -> date:
    return datetime.now(ZoneInfo("America/New_York")).date()


def shoot(page: Page, folder: Path, name: str) -> None:
    """Whole-page screenshots at 390 and 1440 wide; the page is left at the
    phone's size."""
    for width, viewport in SCREENSHOT_SIZES.items():
        page.set_viewport_size(viewport)  # type: ignore[arg-type]
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True, animations="disabled", caret="hide")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]


class Loads:
    """Counts the documents the page loads (navigations of its main frame)."""

    def __init__(self, page: Page) -> None:
        self.count = 0
        page.on("load", lambda _page: self._loaded())

    def _loaded(self) -> None:
        self.count += 1


def answer_visit(page: Page, visit: date, words: dict[str, str]) -> None:
    question = page.get_by_role("group", name=words["question"])
    question.get_by_label(words["month"]).fill(str(visit.month))
    question.get_by_label(words["day"]).fill(str(visit.day))
    question.get_by_label(words["year"]).fill(str(visit.year))
    page.get_by_role("button", name=words["continue"]).click()
    page.wait_for_load_state()


def type_date(page: Page, group: object, day: date, words: dict[str, str]) -> None:
    """Month, day and year typed key by key, Tab between them, as a person does."""
    group.get_by_label(words["month"]).click()  # type: ignore[attr-defined]
    page.keyboard.type(str(day.month))
    page.keyboard.press("Tab")
    page.keyboard.type(str(day.day))
    page.keyboard.press("Tab")
    page.keyboard.type(str(day.year))


def fill_details(page: Page, words: dict[str, str], *, email: str, phone: str = "555-201-3344") -> None:
    about = page.get_by_role("group", name=words["about_you"])
    about.get_by_label(words["first_name"]).fill("Ilsabet")
    about.get_by_label(words["last_name"]).fill("Quillfeather")
    type_date(page, page.get_by_role("group", name=words["dob"]), date(1979, 11, 7), words)
    page.get_by_label(words["email"]).fill(email)
    page.get_by_label(words["phone"]).fill(phone)
    page.get_by_label(words["reason"]).check()


def first_question(page: Page, words: dict[str, str]) -> None:
    page.goto("/reset/")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["question"])


# --- Eligibility first ----------------------------------------------------------------------


def test_a_patient_seen_today_learns_it_after_answering_one_question(site: str, new_page: Callable[..., Page]) -> None:
    words = WORDS["en"]
    problems = PageProblems()
    page = new_page(viewport=PHONE, base_url=site, problems=problems)
    first_question(page, words)
    # One question: three boxes, nothing personal.
    expect(page.locator("main input:visible")).to_have_count(3)
    loads = Loads(page)

    answer_visit(page, practice_today(), words)

    expect(page.get_by_role("heading", level=1)).to_have_text(words["too_early"])
    assert loads.count == 1
    main = page.get_by_role("main")
    come_back = (practice_today() + timedelta(days=2)).strftime("%A, %B %-d")
    expect(main).to_contain_text(come_back)
    for words_of_advice in ("signed the visit notes", "within 48 hours", "Spam or Junk", "Promotions"):
        expect(main).to_contain_text(words_of_advice)
    assert problems.messages == [], "\n".join(problems.messages)


def test_a_patient_past_the_window_files_in_two_page_loads_after_the_first_question(
    site: str, new_page: Callable[..., Page]
) -> None:
    words = WORDS["en"]
    problems = PageProblems()
    page = new_page(viewport=PHONE, base_url=site, problems=problems)
    first_question(page, words)
    loads = Loads(page)

    answer_visit(page, practice_today() - timedelta(days=5), words)
    expect(page.get_by_role("heading", level=1)).to_have_text(words["form"])
    expect(page.locator("input[name='appointment_date']")).to_have_value(
        (practice_today() - timedelta(days=5)).isoformat()
    )
    email = f"ilsabet-{secrets.token_hex(4)}@example.com"
    fill_details(page, words, email=email)
    page.get_by_role("group", name=words["others"]).get_by_label(words["no"]).check()
    # The address, shown back above the button as it was typed.
    expect(page.locator("#email-check")).to_be_visible()
    expect(page.locator("#email-check-address")).to_have_text(email)
    page.get_by_role("button", name=words["send"]).click()

    expect(page).to_have_url(re.compile(r"/reset/submitted/[0-9A-Z]{4}-[0-9A-Z]{4}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words["thanks"])
    assert loads.count == 2, f"{loads.count} page loads after the first question"
    assert problems.messages == [], "\n".join(problems.messages)


def test_errors_keep_what_was_typed_and_put_the_focus_on_the_summary(site: str, new_page: Callable[..., Page]) -> None:
    words = WORDS["en"]
    problems = PageProblems()
    page = new_page(viewport=PHONE, base_url=site, problems=problems)
    first_question(page, words)
    answer_visit(page, practice_today() - timedelta(days=5), words)
    about = page.get_by_role("group", name=words["about_you"])
    about.get_by_label(words["first_name"]).fill("Ilsabet")
    born = page.get_by_role("group", name=words["dob"])
    born.get_by_label(words["month"]).fill("11")
    born.get_by_label(words["year"]).fill("1979")
    page.get_by_label(words["email"]).fill("ilsabet@example.com")

    page.get_by_role("button", name=words["send"]).click()
    page.wait_for_load_state()

    summary = page.get_by_role("alert")
    expect(summary).to_be_focused()
    expect(page).to_have_title(re.compile(r"^Error:"))
    expect(summary.get_by_role("link")).to_have_text(
        [
            "Enter your last name",
            "Date of birth must include a day",
            "Enter your phone number",
            "Choose what went wrong",
        ]
    )
    expect(about.get_by_label(words["first_name"])).to_have_value("Ilsabet")
    expect(born.get_by_label(words["month"])).to_have_value("11")
    expect(born.get_by_label(words["year"])).to_have_value("1979")
    expect(born).to_have_accessible_description(re.compile("Date of birth must include a day"))
    expect(born.get_by_label(words["day"])).to_have_attribute("aria-invalid", "true")
    expect(born.get_by_label(words["month"])).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#email-check-address")).to_have_text("ilsabet@example.com")

    # Each link leads to the input to fix: the date's box at fault, the
    # group's first option.
    summary.get_by_role("link", name="Date of birth must include a day").click()
    expect(born.get_by_label(words["day"])).to_be_focused()
    summary.get_by_role("link", name="Choose what went wrong").click()
    expect(page.get_by_label(words["reason"])).to_be_focused()
    expect(page.get_by_label(words["reason"])).to_be_in_viewport()
    assert problems.messages == [], "\n".join(problems.messages)


def test_the_family_rows_show_only_after_yes(site: str, new_page: Callable[..., Page]) -> None:
    words = WORDS["en"]
    problems = PageProblems()
    page = new_page(viewport=PHONE, base_url=site, problems=problems)
    first_question(page, words)
    answer_visit(page, practice_today() - timedelta(days=5), words)
    question = page.get_by_role("group", name=words["others"])
    rows = page.locator("#family-section")
    expect(rows).to_be_hidden()
    expect(page.get_by_role("group", name="Family member 1")).to_have_count(0)

    question.get_by_label(words["yes"]).check()
    member = page.get_by_role("group", name="Family member 1")
    expect(member.get_by_label(words["first_name"])).to_be_visible()
    page.get_by_role("button", name="Add another family member").click()
    expect(page.get_by_role("group", name="Family member 2").get_by_label(words["first_name"])).to_be_focused()

    question.get_by_label(words["no"]).check()
    expect(rows).to_be_hidden()
    assert problems.messages == [], "\n".join(problems.messages)


def test_the_family_rows_come_after_yes_without_script_too(site: str, new_page: Callable[..., Page]) -> None:
    words = WORDS["en"]
    page = new_page(viewport=PHONE, base_url=site, java_script_enabled=False)
    first_question(page, words)
    answer_visit(page, practice_today() - timedelta(days=5), words)
    expect(page.locator("#family-section")).to_be_hidden()
    fill_details(page, words, email=f"ilsabet-{secrets.token_hex(4)}@example.com")
    page.get_by_role("group", name=words["others"]).get_by_label(words["yes"]).check()

    # Shown at once where the browser knows :has(); else on the next page:
    # "Yes" without a name brings the rows back open, with what to do.
    if not page.locator("#family-section").is_visible():
        page.get_by_role("button", name=words["send"]).click()
        page.wait_for_load_state()
        expect(page.get_by_role("alert")).to_contain_text("Enter the name and date of birth of each person")
    member = page.get_by_role("group", name="Family member 1")
    member.get_by_label(words["first_name"]).fill("Orrin")
    member.get_by_label(words["last_name"]).fill("Quillfeather")
    type_date(page, member.get_by_role("group", name=words["dob"]), date(2012, 5, 30), words)
    page.get_by_role("button", name=words["send"]).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(words["thanks"])


# --- Every state, in both languages, at both sizes ----------------------------------------------


@pytest.mark.parametrize("language", ["en", "es"])
def test_it_takes_screenshots_of_every_state(
    site: str, new_page: Callable[..., Page], shots: Path, language: str
) -> None:
    problems = PageProblems()
    page = new_page(viewport=PHONE, base_url=site, problems=problems)

    page.goto(f"/reset/?lang={language}")  # the language switch: kept in a cookie
    expect(page.locator("html")).to_have_attribute("lang", language)
    shoot(page, shots, f"{language}-01-question")
    page.locator("button[type=submit]").click()
    page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_be_focused()
    shoot(page, shots, f"{language}-02-question-error")

    for name, value in zip(
        ("month", "day", "year"), (practice_today().month, practice_today().day, practice_today().year), strict=True
    ):
        page.locator(f"[name='appointment_date_{name}']").fill(str(value))
    page.locator("button[type=submit]").click()
    page.wait_for_load_state()
    expect(page.locator("time")).to_be_visible()
    shoot(page, shots, f"{language}-03-too-early")

    page.goto("/reset/")
    visit = practice_today() - timedelta(days=5)
    for name, value in zip(("month", "day", "year"), (visit.month, visit.day, visit.year), strict=True):
        page.locator(f"[name='appointment_date_{name}']").fill(str(value))
    page.locator("button[type=submit]").click()
    page.wait_for_load_state()
    expect(page.locator("input[name='appointment_date']")).to_have_value(visit.isoformat())
    shoot(page, shots, f"{language}-04-details")

    page.locator("[name='others_use_login'][value='yes']").check()
    page.locator("[name='first_name']").fill("Ilsabet")
    page.locator("[name='email']").fill("ilsabet.quillfeather@example.com")
    page.locator("[name='family-0-first_name']").fill("Orrin")
    shoot(page, shots, f"{language}-05-details-family")

    page.locator("button[type=submit]").click()
    page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_be_focused()
    expect(page.locator("[name='first_name']")).to_have_value("Ilsabet")
    shoot(page, shots, f"{language}-06-details-errors")

    page.locator("[name='last_name']").fill("Quillfeather")
    for prefix, day in (("date_of_birth", date(1979, 11, 7)), ("family-0-date_of_birth", date(2012, 5, 30))):
        for name, value in zip(("month", "day", "year"), (day.month, day.day, day.year), strict=True):
            page.locator(f"[name='{prefix}_{name}']").fill(str(value))
    page.locator("[name='family-0-last_name']").fill("Quillfeather")
    page.locator("[name='phone']").fill("555-201-3344")
    page.locator("[name='reason'][value='shared_account']").check()
    assert problems.messages == [], "\n".join(problems.messages)
    # An old tab: the CSRF cookie is gone when the form goes (Chromium logs
    # the 403 it answers as a console error: that one is expected).
    page.context.clear_cookies(name="csrftoken")
    page.locator("button[type=submit]").last.click()
    page.wait_for_load_state()
    expect(page.locator("[name='first_name']")).to_have_value("Ilsabet")
    shoot(page, shots, f"{language}-07-csrf-failure")
    assert [m for m in problems.messages if "403 (Forbidden)" not in m] == [], "\n".join(problems.messages)
    problems.clear()

    page.locator("button[type=submit]").last.click()
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(r"/reset/submitted/[0-9A-Z]{4}-[0-9A-Z]{4}/$"))
    shoot(page, shots, f"{language}-08-confirmation")
    assert problems.messages == [], "\n".join(problems.messages)
