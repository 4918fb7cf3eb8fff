"""A patient and a staff member in a real browser (Debian's Chromium through
Playwright), against the whole system run like production: gunicorn, a
Celery worker and beat, PostgreSQL, Redis and an SMTP server (tests/support/).

The patient goes through the help steps, files a request for themselves and
two family members, reads the confirmation and opens the status link from the
email that arrived; a staff member signs in to the admin, finds the request by
its reference, and verifies and resolves it in the request page's one form;
the patient's status page then says the access was reset. Every page is saved at
phone and desktop width under var/screenshots/journey/.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .support.chromium import require_playwright

require_playwright()

from playwright.sync_api import Locator, Page, expect  # noqa: E402

from .support.chromium import (  # noqa: E402
    DESKTOP,
    PHONE,
    PageProblems,
    screenshot_folder,
    screenshots_at_both_widths,
)
from .support.patients import personal_data_of  # noqa: E402
from .support.polling import wait_for  # noqa: E402
from .support.processes import run_manage  # noqa: E402
from .support.stack import Stack  # noqa: E402

pytest_plugins = ["tests.support.stack", "tests.support.chromium"]
pytestmark = pytest.mark.services

STACK_REDIS = "shared"
# One address files everything here; the bot timer would drop a form sent
# back within SUBMIT_MIN_SECONDS (Playwright is faster than a person).
STACK_ENV = {"SUBMIT_MIN_SECONDS": "0", "SUBMIT_RATE_PER_ADDRESS": "100000/h", "STAFF_MFA": "0"}

STAFF_USERNAME = "nora.nurse"

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_folder("journey")


@pytest.fixture(scope="module")
def staff_password(service_stack: Stack) -> str:
    """A staff member in the least-privilege group, made with the app's own
    command (setup_staff_group); returns the password."""
    password = secrets.token_urlsafe(18)
    code = (
        "import os\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.core.management import call_command\n"
        f"get_user_model().objects.create_user(username={STAFF_USERNAME!r}, first_name='Nora', last_name='Nurse',\n"
        "    password=os.environ['STAFF_PASSWORD'])\n"
        f"call_command('setup_staff_group', user=[{STAFF_USERNAME!r}])\n"
    )
    run_manage("shell", "-c", code, env={**service_stack.env, "STAFF_PASSWORD": password})
    return password


def practice_today() -> date:
    """Today on the practice's clock (PRACTICE_TIME_ZONE's default), which
    the 48-hour window and the form's "not in the future" rules use."""
    return datetime.now(ZoneInfo("America/New_York")).date()


def type_date(page: Page, group: Locator, value: date) -> None:
    """A memorable date into its month, day and year boxes, as a person types it."""
    for label, part in (("Month", value.month), ("Day", value.day), ("Year", value.year)):
        type_into(page, group.get_by_label(label, exact=True), str(part))


def type_into(page: Page, field: Locator, text: str) -> None:
    """Click the field and type, key by key, as a person does."""
    field.click()
    page.keyboard.type(text)


def test_it_takes_a_patient_from_the_help_steps_to_a_reset_access_with_staff_in_the_admin(
    stack: Stack, new_page: Callable[..., Page], staff_password: str, shots: Path
) -> None:
    tag = secrets.token_hex(4)
    visit = practice_today() - timedelta(days=5)
    form = {
        "first_name": "Zephyrine",
        "last_name": "Quillfeather",
        "date_of_birth": "1979-11-07",
        "email": f"zephyrine-{tag}@example.com",
        "phone": "(617) 555-0142",
        "appointment_date": visit.isoformat(),
    }
    problems = PageProblems()
    patient = new_page(viewport=PHONE, base_url=stack.site_url, problems=problems)

    # --- The patient reads the help steps and goes on to the form.
    patient.goto("/")
    expect(patient.get_by_role("heading", level=1)).to_have_text("Can\u2019t get into your patient portal?")
    expect(patient.get_by_role("link", name="Go to the Patient Fusion login page")).to_have_attribute(
        "href", "https://www.patientfusion.com/"
    )
    screenshots_at_both_widths(patient, shots, "01 guide")
    # This patient knows the window has passed: the start page's direct way.
    patient.get_by_role("link", name=re.compile("more than 48 hours since my visit")).click()
    expect(patient).to_have_url(f"{stack.site_url}/reset/")
    expect(patient.get_by_role("heading", level=1)).to_have_text("When was your visit?")
    screenshots_at_both_widths(patient, shots, "02 form first question")

    # --- The form asks the visit date first, then the rest on one page.
    type_date(patient, patient.get_by_role("group", name="When was your visit?"), visit)
    patient.get_by_role("button", name="Continue").click()
    expect(patient.get_by_role("heading", level=1)).to_have_text("Ask us to reset your portal access")
    screenshots_at_both_widths(patient, shots, "02 form empty")

    # --- Fills in the rest, mouse and keyboard, and names two family members.
    about_you = patient.get_by_role("group", name="About you")
    type_into(patient, about_you.get_by_label("First name"), form["first_name"])
    patient.keyboard.press("Tab")
    patient.keyboard.type(form["last_name"])
    type_date(patient, about_you.get_by_role("group", name="Date of birth"), date(1979, 11, 7))
    reach = patient.get_by_role("group", name="How we reach you")
    type_into(patient, reach.get_by_label("Email address the portal invitation was sent to"), form["email"])
    patient.keyboard.press("Tab")
    patient.keyboard.type(form["phone"])
    patient.get_by_label("The invitation link expired").check()
    type_into(patient, patient.get_by_label("Anything else we should know?"), "My daughter uses it too.")

    others = patient.get_by_role("group", name="Does anyone else use this login?")
    others.get_by_label("Yes").check()
    first_member = patient.get_by_role("group", name="Family member 1")
    type_into(patient, first_member.get_by_label("First name"), "Ilsabet")
    patient.keyboard.press("Tab")
    patient.keyboard.type("Quillfeather")
    type_date(patient, first_member.get_by_role("group", name="Date of birth"), date(2012, 5, 30))
    patient.get_by_role("button", name="Add another family member").click()
    second_member = patient.get_by_role("group", name="Family member 2")
    expect(second_member.get_by_label("First name")).to_be_focused()
    expect(patient.get_by_role("status")).to_have_text("Family member 2 added.")
    patient.keyboard.type("Orrin")
    patient.keyboard.press("Tab")
    patient.keyboard.type("Quillfeather")
    type_date(patient, second_member.get_by_role("group", name="Date of birth"), date(1977, 2, 14))

    for name, value in (
        ("first_name", form["first_name"]),
        ("date_of_birth_year", "1979"),
        ("appointment_date", form["appointment_date"]),
        ("family-0-date_of_birth_day", "30"),
        ("family-1-first_name", "Orrin"),
        ("family-1-date_of_birth_month", "2"),
    ):
        expect(patient.locator(f"[name='{name}']")).to_have_value(value)
    # The address is shown back before sending: the costliest typo.
    expect(patient.get_by_role("main")).to_contain_text(form["email"])
    screenshots_at_both_widths(patient, shots, "03 form filled in")
    patient.get_by_role("button", name="Send my request").click()

    # --- Reads the confirmation: the reference and what happens next.
    expect(patient).to_have_url(re.compile(r"/reset/submitted/[0-9A-Z]{4}-[0-9A-Z]{4}/$"))
    expect(patient.get_by_role("heading", level=1)).to_have_text("Thank you — we have your request")
    reference = patient.url.rstrip("/").rsplit("/", 1)[-1]
    expect(patient.get_by_role("main")).to_contain_text(reference)
    expect(patient.get_by_role("heading", name="What happens next")).to_be_visible()
    confirmation_text = patient.get_by_role("main").inner_text()
    for label, value in personal_data_of({**form, "details": ""}).items():
        assert value not in confirmation_text, f"the confirmation shows the patient's {label}"
    screenshots_at_both_widths(patient, shots, "04 confirmation")

    # --- The acknowledgment arrives; its status link opens in the browser.
    [ack] = stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    assert ack.contains(reference)
    links = set(re.findall(re.escape(stack.site_url) + r"/status/[A-Za-z0-9_-]+/", ack.text()))
    assert len(links) == 1, f"expected one status link in the acknowledgment:\n{ack.text()}"
    [status_link] = links
    patient.goto(status_link)
    expect(patient.get_by_role("heading", level=1)).to_have_text("Your portal access request")
    expect(patient.get_by_role("main")).to_contain_text(reference)
    expect(patient.locator("[aria-current='step']")).to_have_text(re.compile(r"^\s*Received\s*$"))
    expect(patient.get_by_role("main")).to_contain_text("We have your request")
    screenshots_at_both_widths(patient, shots, "05 status received")
    assert problems.messages == [], "\n".join(problems.messages)

    # --- A staff member signs in and finds the request by its reference.
    staff_problems = PageProblems()
    staff = new_page(viewport=DESKTOP, base_url=stack.site_url, problems=staff_problems)
    staff.goto("/admin/")
    expect(staff).to_have_url(re.compile(r"/admin/login/"))
    staff.get_by_label("Username").fill(STAFF_USERNAME)
    staff.get_by_label("Password").fill(staff_password)
    screenshots_at_both_widths(staff, shots, "06 admin login")
    staff.get_by_role("button", name="Log in").click()
    expect(staff).to_have_url(f"{stack.site_url}/admin/")
    screenshots_at_both_widths(staff, shots, "07 admin index")
    staff.get_by_role("link", name="Reset requests", exact=True).first.click()
    expect(staff).to_have_url(re.compile(r"/admin/requests_app/resetrequest/$"))
    # Staff type references as they hear them: lower case, no dash.
    staff.get_by_role("textbox", name="Search").fill(reference.lower().replace("-", ""))
    staff.keyboard.press("Enter")
    rows = staff.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Zephyrine Quillfeather")
    screenshots_at_both_widths(staff, shots, "08 admin search")
    rows.first.get_by_role("link", name=reference).click()

    # --- Opens it and verifies and resolves it in one form.
    status_badge = staff.locator("#rr-status")
    expect(staff.get_by_role("heading", name=reference)).to_be_visible()
    expect(status_badge).to_have_text("New")
    for member in ("Ilsabet", "Orrin"):
        expect(staff.locator("#content-main")).to_contain_text(member)
    screenshots_at_both_widths(staff, shots, "09 admin request new")

    finish = staff.get_by_role("region", name="Verify and resolve")
    finish.get_by_label(re.compile(r"^Date of birth: ")).check()
    finish.get_by_label(re.compile(r"^Phone: ")).check()
    finish.get_by_text("Add an internal note").click()
    type_into(staff, finish.get_by_label("For staff only: the patient never sees it."), "Re-sent the invitation.")
    finish.get_by_label("Then open the next request in the queue").uncheck()
    screenshots_at_both_widths(staff, shots, "10 admin verify and resolve")
    finish.get_by_role("button", name=re.compile(r"^Re-invited to the portal")).click()
    done = f"{reference} is verified and resolved; the patient is emailed."
    expect(staff.locator(".messagelist")).to_contain_text(done)
    expect(status_badge).to_have_text("Resolved")
    expect(staff.locator("#timeline")).to_contain_text("Re-sent the invitation.")
    screenshots_at_both_widths(staff, shots, "12 admin resolved")
    assert staff_problems.messages == [], "\n".join(staff_problems.messages)

    [row] = stack.sql(
        "SELECT r.status, r.outcome, r.identity_dob_matched, r.identity_phone_matched, r.identity_email_matched, "
        "u.username AS verified_by, (SELECT count(*) FROM requests_app_familymember f WHERE f.reset_id = r.id) "
        "AS family FROM requests_app_resetrequest r LEFT JOIN auth_user u ON u.id = r.identity_verified_by_id "
        "WHERE r.reference = %s",
        (reference,),
    )
    assert row == {
        "status": "resolved",
        "outcome": "reinvited",
        "identity_dob_matched": True,
        "identity_phone_matched": True,
        "identity_email_matched": False,
        "verified_by": STAFF_USERNAME,
        "family": 2,
    }

    # --- The resolution email arrives; the patient's status page says so.
    messages = stack.smtp.wait_for_messages(form["email"], 2, diagnostics=stack.diagnostics)
    resolved = messages[1]
    assert resolved.contains(reference)
    assert resolved.contains("reset"), resolved.text()
    wait_for(
        lambda: [e for e in stack.outbox(reference, "resolved") if e["state"] == "sent"],
        timeout=30,
        what="the resolution email to be marked sent",
        diagnostics=stack.diagnostics,
    )
    patient.reload()
    expect(patient.locator("[aria-current='step']")).to_have_text(re.compile(r"^\s*Access reset\s*$"))
    expect(patient.get_by_role("main")).to_contain_text("Your portal access has been reset.")
    expect(patient.get_by_role("link", name="Log in to Patient Fusion")).to_be_visible()
    screenshots_at_both_widths(patient, shots, "13 status access reset")
    assert problems.messages == [], "\n".join(problems.messages)
