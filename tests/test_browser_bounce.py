"""A bounced acknowledgment in a real browser (Debian's Chromium through
Playwright), against the app under gunicorn with production settings (DEBUG
off, the real CSP, EMAIL_PROVIDER=postmark) on SQLite:

- Postmark's bounce report, posted to the real webhook URL with its basic
  auth, puts the request at the top of the queue with its mark; the
  dashboard counts it;
- the request's page says the address does not work and offers the
  correction; after the call the front desk corrects it (the identity check
  in the same form), the mark is gone and the status link renewed;
- axe-core finds nothing on the page with the mark and on the correction's
  form.

Every step is saved at phone and desktop width under var/screenshots/bounce/.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
WEBHOOK = "/email/anymail/postmark/tracking/"
SECRET = f"postmark:{secrets.token_urlsafe(18)}"
WRONG = "maria.lopez@exmaple.com"
RIGHT = "maria.lopez@example.com"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("bounce")
    env, port = sqlite_site_env(
        root,
        STATIC_ROOT=str(root / "static"),
        STAFF_MFA="0",
        EMAIL_PROVIDER="postmark",
        POSTMARK_SERVER_TOKEN="server-token-not-used: no worker runs",
        ANYMAIL_WEBHOOK_SECRET=SECRET,
    )
    run_manage("migrate", "--noinput", "--verbosity=0", env=env)
    run_manage("collectstatic", "--noinput", "--verbosity=0", env=env)
    with serving_gunicorn(env=env, root=root, port=port) as url:
        yield url, env


@pytest.fixture(scope="module")
def shots() -> Path:
    return screenshot_folder("bounce")


@pytest.fixture(scope="module")
def staff_password(site: tuple[str, dict[str, str]]) -> str:
    return create_staff_member(site[1], STAFF_USERNAME, first_name="Fran", last_name="Desk")


def seed_queue(env: dict[str, str]) -> dict[str, Any]:
    """Three requests filed hours apart, the newest by Maria, whose
    acknowledgment Postmark accepted (sent, with Postmark's message id)."""
    code = (
        "import json, uuid\n"
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from requests_app.models import OutboundEmail\n"
        "from tests.factories import OutboundEmailFactory, ResetRequestFactory\n"
        "now = timezone.now()\n"
        "older = [ResetRequestFactory(submitted_at=now - timedelta(hours=h)).reference for h in (6, 5)]\n"
        f"maria = ResetRequestFactory(first_name='Maria', last_name='Lopez', email={WRONG!r},\n"
        "    phone='+15552013344', submitted_at=now - timedelta(hours=1))\n"
        "message_id = str(uuid.uuid4())\n"
        "OutboundEmailFactory(reset=maria, state=OutboundEmail.State.SENT, sent_at=now - timedelta(minutes=50),\n"
        "    attempts=1, provider_message_id=message_id)\n"
        "print(json.dumps({'older': older, 'pk': maria.pk, 'reference': maria.reference,\n"
        "    'token': maria.status_token, 'message_id': message_id}))\n"
    )
    return manage_json(env, code)


def post_bounce(url: str, message_id: str, report_id: int, credentials: str = SECRET) -> int:
    """Postmark's bounce webhook call, as Postmark makes it."""
    body = {
        "RecordType": "Bounce",
        "ID": report_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": message_id,
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": WRONG,
        "From": "resets@practice.example",
        "BouncedAt": "2026-11-27T16:28:50.3963933-04:00",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your request",
    }
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=10)
    try:
        connection.request(
            "POST",
            WEBHOOK,
            body=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def state_of(env: dict[str, str], pk: int) -> dict[str, Any]:
    code = (
        "import json\n"
        "from requests_app.models import ResetRequest\n"
        f"r = ResetRequest.objects.get(pk={pk})\n"
        "print(json.dumps({'email': r.email, 'marked': r.email_undeliverable, 'token': r.status_token,\n"
        "    'emails': list(r.emails.order_by('pk').values_list('kind', 'to', 'state'))}))\n"
    )
    return manage_json(env, code)


@pytest.fixture
def desk(
    site: tuple[str, dict[str, str]], new_page: Callable[..., Page], staff_password: str
) -> Iterator[tuple[Page, PageProblems]]:
    problems = PageProblems()
    page = new_page(viewport=DESKTOP, base_url=site[0], problems=problems)
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(STAFF_USERNAME)
    page.get_by_label("Password").fill(staff_password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site[0]}/admin/")
    yield page, problems
    assert problems.messages == [], "\n".join(problems.messages)


def test_a_bounce_puts_the_request_first_with_its_mark_and_the_front_desk_corrects_the_address(
    site: tuple[str, dict[str, str]], desk: tuple[Page, PageProblems], shots: Path
) -> None:
    url, env = site
    page, _ = desk
    seeded = seed_queue(env)
    page.goto(LIST)
    first_row = page.locator("#result_list tbody tr").first
    expect(first_row).to_contain_text(seeded["older"][0])
    screenshots_at_both_widths(page, shots, "01 queue before the bounce")

    assert post_bounce(url, seeded["message_id"], 4323372036, credentials="postmark:not-the-secret") == 400
    assert state_of(env, seeded["pk"])["marked"] is False
    assert post_bounce(url, seeded["message_id"], 4323372036) == 200
    assert post_bounce(url, seeded["message_id"], 4323372036) == 200  # Postmark's retry: nothing more

    page.goto(LIST)
    expect(first_row).to_contain_text(seeded["reference"])
    expect(first_row.locator(".rr-undeliverable-mark")).to_have_text("Email does not work — call the patient")
    expect(page.locator("#result_list tbody tr").nth(1)).to_contain_text(seeded["older"][0])
    screenshots_at_both_widths(page, shots, "02 queue with the bounced request first")

    page.goto("/admin/")
    tile = page.locator(".rr-tile-email_undeliverable")
    expect(tile.locator(".rr-tile-value")).to_have_text("1")
    screenshots_at_both_widths(page, shots, "03 dashboard counts it")
    tile.get_by_role("link").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)

    page.locator("#result_list").get_by_role("link", name=seeded["reference"], exact=True).click()
    notice = page.get_by_role("region", name="The email address does not work — call the patient")
    expect(notice).to_contain_text(f"The acknowledgment email to {WRONG} did not arrive")
    expect(notice).to_contain_text("Postmark: The server was unable to deliver your message")
    screenshots_at_both_widths(page, shots, "04 request page with the notice")

    notice.get_by_role("link", name="Correct the email address…").click()
    screenshots_at_both_widths(page, shots, "05 the correction form")
    page.get_by_label("The patient's email address, as they spell it now").fill(RIGHT)
    page.get_by_label(re.compile(r"^Date of birth matches the chart")).check()
    page.get_by_label(re.compile(r"^Phone matches the chart")).check()
    page.get_by_role("button", name="Correct the email address", exact=True).click()

    expect(page.locator(".messagelist")).to_contain_text(f"is now {RIGHT}; the acknowledgment email goes to it")
    expect(page.locator("#rr-undeliverable")).to_have_count(0)
    expect(page.locator("#timeline")).to_contain_text(f"Email address corrected after a call: {WRONG} → {RIGHT}")
    screenshots_at_both_widths(page, shots, "06 corrected")
    after = state_of(env, seeded["pk"])
    assert after["email"] == RIGHT and after["marked"] is False
    assert after["token"] != seeded["token"]
    assert after["emails"] == [["acknowledgment", WRONG, "bounced"], ["acknowledgment", RIGHT, "pending"]]

    page.goto(LIST)
    expect(page.locator("#result_list tbody tr").first).to_contain_text(seeded["older"][0])
    expect(page.locator("#result_list .rr-undeliverable-mark")).to_have_count(0)


def test_axe_finds_nothing_on_the_notice_and_the_correction_form(
    site: tuple[str, dict[str, str]], new_page: Callable[..., Page], staff_password: str, axe_script: Path
) -> None:
    url, env = site
    seeded = seed_queue(env)
    assert post_bounce(url, seeded["message_id"], 4323372037) == 200
    page = new_page(viewport=DESKTOP, base_url=url, bypass_csp=True)  # axe is injected as a script
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(STAFF_USERNAME)
    page.get_by_label("Password").fill(staff_password)
    page.get_by_role("button", name="Log in").click()

    found = {}
    for name in ("change", "correct_email"):
        page.goto(f"{LIST}{seeded['pk']}/{name}/")
        for width, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)  # type: ignore[arg-type]
            found[f"{name} at {width} width"] = axe_violations(page, axe_script)

    report = "\n".join(f"{where}:\n{describe_violations(v)}" for where, v in found.items() if v)
    assert not report, report
