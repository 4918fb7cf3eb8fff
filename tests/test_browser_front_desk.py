"""The front desk's day in a real browser (Debian's Chromium through
Playwright), against the app under gunicorn with production settings (DEBUG
off, the real CSP) on SQLite:

- a straightforward request from the queue to resolved in four clicks and
  two page loads (open it, tick two identifiers, press the outcome), landing
  on the next request; the next one done from the keyboard alone;
- wait → a message to the patient (on their status page) → the patient
  answered → resolved;
- a wrong bulk close: the confirmation names both requests, "No, go back"
  closes nothing;
- close, then reopen.

Every step is saved at phone and desktop width under
var/screenshots/front-desk/, and no page logs a script error or a refused
resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support.chromium import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402

from .support.chromium import (  # noqa: E402
    DESKTOP,
    VIEWPORTS,
    PageProblems,
    axe_violations,
    describe_violations,
    screenshot_folder,
    screenshots_at_both_widths,
)
from .support.processes import create_staff_member, manage_json, run_manage, serving_gunicorn, sqlite_site_env  # noqa: E402

pytest_plugins = ["tests.support.chromium"]

expect.set_options(timeout=10_000)

STAFF_USERNAME = "fran.frontdesk"
LIST = "/admin/requests_app/resetrequest/"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("front-desk")
    env, port = sqlite_site_env(root, STATIC_ROOT=str(root / "static"), STAFF_MFA="0")
    run_manage("migrate", "--noinput", "--verbosity=0", env=env)
    run_manage("collectstatic", "--noinput", "--verbosity=0", env=env)
    with serving_gunicorn(env=env, root=root, port=port) as url:
        yield url, env


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_folder("front-desk")


@pytest.fixture(scope="module")
def staff_password(site: tuple[str, dict[str, str]]) -> str:
    """A front-desk member in the least-privilege group (setup_staff_group)."""
    return create_staff_member(site[1], STAFF_USERNAME, first_name="Fran", last_name="Desk")


def seed(env: dict[str, str], *specs: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests made with the test factories, oldest first (an hour apart,
    the first ``len(specs)`` hours ago); returns their pk and reference."""
    code = (
        "import json\n"
        "from datetime import timedelta\n"
        "from django.db import transaction\n"
        "from django.utils import timezone\n"
        "from tests.factories import ResetRequestFactory\n"
        f"specs = {specs!r}\n"
        "now = timezone.now()\n"
        "made = []\n"
        "with transaction.atomic():\n"
        "    for number, spec in enumerate(specs):\n"
        "        rr = ResetRequestFactory(submitted_at=now - timedelta(hours=len(specs) - number), **spec)\n"
        "        made.append({'pk': rr.pk, 'reference': rr.reference, 'token': rr.status_token})\n"
        "print(json.dumps(made))\n"
    )
    return manage_json(env, code)


def state_of(env: dict[str, str], *references: str) -> dict[str, dict[str, Any]]:
    code = (
        "import json\n"
        "from requests_app.models import ResetRequest\n"
        f"rows = ResetRequest.objects.filter(reference__in={list(references)!r})\n"
        "print(json.dumps({r.reference: {'status': r.status, 'outcome': r.outcome, 'close_reason': r.close_reason,"
        " 'identity': r.identity_verified_at is not None, 'assignee': r.assignee.username if r.assignee else None,"
        " 'messages': r.patient_messages.count()} for r in rows}))\n"
    )
    return manage_json(env, code)


class Counted:
    """The clicks a test makes and the pages the browser loads meanwhile."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.clicks = 0
        self.loads = 0
        page.on("load", self._loaded)

    def _loaded(self, _page: Page) -> None:
        self.loads += 1

    def click(self, target: Any) -> None:
        self.clicks += 1
        target.click()

    def reset(self) -> None:
        self.clicks = self.loads = 0


@pytest.fixture
def desk(
    site: tuple[str, dict[str, str]], new_page: Callable[..., Page], staff_password: str
) -> Iterator[tuple[Page, PageProblems]]:
    """A front-desk member signed in, on the queue."""
    problems = PageProblems()
    page = new_page(viewport=DESKTOP, base_url=site[0], problems=problems)
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(STAFF_USERNAME)
    page.get_by_label("Password").fill(staff_password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site[0]}/admin/")
    yield page, problems
    assert problems.messages == [], "\n".join(problems.messages)


def row_link(page: Page, reference: str) -> Any:
    return page.locator("#result_list").get_by_role("link", name=reference, exact=True)


def test_a_straightforward_request_is_resolved_in_four_clicks_and_two_page_loads(
    site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems], shots: Path
) -> None:
    url, env = site
    page, _ = desk
    first, second, third = seed(env, {}, {}, {})
    page.goto(LIST)
    expect(row_link(page, first["reference"])).to_be_visible()
    counted = Counted(page)

    counted.click(row_link(page, first["reference"]))
    expect(page.get_by_role("heading", name=first["reference"])).to_be_visible()
    screenshots_at_both_widths(page, shots, "01 new request")
    finish = page.get_by_role("region", name="Verify and resolve")
    counted.click(finish.get_by_label(re.compile(r"^Date of birth: ")))
    counted.click(finish.get_by_label(re.compile(r"^Phone: ")))
    counted.click(finish.get_by_role("button", name=re.compile(r"^Re-invited to the portal")))

    expect(page).to_have_url(f"{url}{LIST}{second['pk']}/change/")
    expect(page.locator(".messagelist")).to_contain_text(f"{first['reference']} is verified and resolved")
    page.wait_for_load_state("load")
    assert (counted.clicks, counted.loads) == (4, 2)
    screenshots_at_both_widths(page, shots, "02 resolved, on to the next")

    # The next one from the keyboard alone: d and e tick, 1 presses the first outcome.
    page.keyboard.press("d")
    page.keyboard.press("e")
    expect(page.get_by_label(re.compile(r"^Date of birth: "))).to_be_checked()
    expect(page.get_by_label(re.compile(r"^Email: "))).to_be_checked()
    expect(page.get_by_label(re.compile(r"^Phone: "))).not_to_be_checked()
    page.keyboard.press("1")
    expect(page).to_have_url(f"{url}{LIST}{third['pk']}/change/")

    states = state_of(env, first["reference"], second["reference"], third["reference"])
    assert states[first["reference"]] == {
        "status": "resolved",
        "outcome": "reinvited",
        "close_reason": "",
        "identity": True,
        "assignee": STAFF_USERNAME,
        "messages": 0,
    }
    assert states[second["reference"]]["status"] == "resolved"
    assert states[third["reference"]]["status"] == "new"


def test_enter_in_the_form_resolves_nothing(site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems]) -> None:
    _, env = site
    page, _ = desk
    [rr] = seed(env, {})
    page.goto(f"{LIST}{rr['pk']}/change/")

    box = page.get_by_label(re.compile(r"^Date of birth: "))
    box.check()
    box.press("Enter")

    expect(page.locator(".errornote, .errorlist").first).to_be_visible()
    assert state_of(env, rr["reference"])[rr["reference"]]["status"] == "new"


def test_wait_then_a_message_then_the_patient_answers_then_resolved(
    site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems], shots: Path, new_page: Callable[..., Page]
) -> None:
    url, env = site
    page, _ = desk
    [rr] = seed(env, {"in_progress": True})
    page.goto(f"{LIST}{rr['pk']}/change/")

    page.get_by_role("link", name=re.compile(r"^Mark waiting on patient")).click()
    page.get_by_label("What are you waiting for? (optional)").fill("Left a voicemail")
    page.get_by_role("button", name="Mark waiting", exact=True).click()
    expect(page.locator("#rr-status")).to_have_text("Waiting on patient")

    page.get_by_role("link", name=re.compile(r"^Send a message")).click()
    screenshots_at_both_widths(page, shots, "03 message choice")
    page.get_by_label("We tried to call you").check()
    page.get_by_role("button", name="Send the message").click()
    expect(page.locator(".messagelist")).to_contain_text("The message is on its way")
    expect(page.locator("#patient-messages")).to_contain_text("We tried to call you about your request")

    patient = new_page(viewport=DESKTOP, base_url=url)
    patient.goto(f"/status/{rr['token']}/")
    expect(patient.locator("main")).to_contain_text("We tried to call you about your request")

    page.get_by_role("button", name=re.compile(r"^Patient answered")).click()
    expect(page.locator("#rr-status")).to_have_text("In progress")
    finish = page.get_by_role("region", name="Verify and resolve")
    finish.get_by_label(re.compile(r"^Date of birth: ")).check()
    finish.get_by_label(re.compile(r"^Phone: ")).check()
    finish.get_by_label("Then open the next request in the queue").uncheck()
    finish.get_by_role("button", name=re.compile(r"^Visit notes signed")).click()
    expect(page.locator("#rr-status")).to_have_text("Resolved")
    screenshots_at_both_widths(page, shots, "04 resolved after waiting")

    state = state_of(env, rr["reference"])[rr["reference"]]
    assert (state["status"], state["outcome"], state["messages"]) == ("resolved", "notes_signed", 1)


def test_a_wrong_bulk_close_is_caught_by_its_confirmation(
    site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems], shots: Path
) -> None:
    url, env = site
    page, _ = desk
    one, two = seed(env, {}, {})
    page.goto(LIST)

    for rr in (one, two):
        row = page.locator("#result_list tbody tr").filter(has=page.get_by_role("link", name=rr["reference"]))
        row.get_by_role("checkbox").check()
    page.get_by_label("Action:").select_option(label="Close as spam (no email)…")
    page.get_by_role("button", name="Go").click()

    expect(page.get_by_role("heading", name="Close 2 requests as spam?")).to_be_visible()
    for rr in (one, two):
        expect(page.locator("#content")).to_contain_text(rr["reference"])
    screenshots_at_both_widths(page, shots, "05 bulk close confirmation")
    page.get_by_role("link", name="No, go back").click()

    expect(page).to_have_url(f"{url}{LIST}")
    states = state_of(env, one["reference"], two["reference"])
    assert {state["status"] for state in states.values()} == {"new"}


def test_a_closed_request_is_reopened(
    site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems], shots: Path
) -> None:
    _, env = site
    page, _ = desk
    [rr] = seed(env, {"in_progress": True})
    page.goto(f"{LIST}{rr['pk']}/change/")

    page.get_by_role("link", name=re.compile(r"^Close…")).click()
    page.get_by_label("Duplicate").check()
    page.get_by_role("button", name="Close request", exact=True).click()
    expect(page.locator("#rr-status")).to_have_text("Closed")

    page.get_by_role("link", name=re.compile(r"^Reopen…")).click()
    page.get_by_label("Ended by mistake").check()
    expect(page.get_by_label("Email the patient that we are working on it again")).to_be_checked()
    screenshots_at_both_widths(page, shots, "06 reopen form")
    page.get_by_role("button", name="Reopen", exact=True).click()
    expect(page.locator("#rr-status")).to_have_text("In progress")
    expect(page.locator(".messagelist")).to_contain_text("is reopened and assigned to you")
    screenshots_at_both_widths(page, shots, "07 reopened")

    state = state_of(env, rr["reference"])[rr["reference"]]
    assert (state["status"], state["close_reason"], state["assignee"]) == ("in_progress", "", STAFF_USERNAME)


def test_single_key_shortcuts_can_be_turned_off_and_stay_off(
    site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems]
) -> None:
    _, env = site
    page, _ = desk
    first, second = seed(env, {}, {})
    page.goto(f"{LIST}{first['pk']}/change/")

    page.get_by_label("Single-key shortcuts").uncheck()
    page.keyboard.press("d")
    expect(page.get_by_label(re.compile(r"^Date of birth: "))).not_to_be_checked()
    expect(page.locator("kbd").first).to_be_hidden()

    page.goto(f"{LIST}{second['pk']}/change/")
    expect(page.get_by_label("Single-key shortcuts")).not_to_be_checked()
    page.keyboard.press("d")
    expect(page.get_by_label(re.compile(r"^Date of birth: "))).not_to_be_checked()
    page.get_by_label("Single-key shortcuts").check()
    page.keyboard.press("d")
    expect(page.get_by_label(re.compile(r"^Date of birth: "))).to_be_checked()


PAGES = ("change", "message", "wait", "close")


def test_axe_finds_nothing_on_the_queue_the_request_page_and_its_forms(
    site: tuple[str, dict[str, str]], new_page: Callable[..., Page], staff_password: str, axe_script: Path
) -> None:
    url, env = site
    [rr] = seed(env, {"in_progress": True})
    page = new_page(viewport=DESKTOP, base_url=url, bypass_csp=True)  # axe is injected as a script
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(STAFF_USERNAME)
    page.get_by_label("Password").fill(staff_password)
    page.get_by_role("button", name="Log in").click()

    found = {}
    for name, path in [("the queue", LIST)] + [(name, f"{LIST}{rr['pk']}/{name}/") for name in PAGES]:
        page.goto(path)
        for width, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)  # type: ignore[arg-type]
            found[f"{name} at {width} width"] = axe_violations(page, axe_script)

    report = "\n".join(f"{where}:\n{describe_violations(v)}" for where, v in found.items() if v)
    assert not report, report
