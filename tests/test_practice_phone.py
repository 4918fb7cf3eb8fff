"""The practice's phone (PRACTICE_PHONE): checked at start-up, and shown as
a tap-to-call link (E.164 in the href, the number as people write it in the
text) wherever a patient is told staff will call or to call back: the
confirmation, the status page, the 404 page and every patient email (its
text part shows the number)."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from requests_app.models import OutboundEmail
from requests_app.outbox.render import build_message
from requests_app.phones import phone_display, phone_href

from .factories import OutboundEmailFactory, ResetRequestFactory

ROOT = Path(__file__).resolve().parent.parent

# Not the default: what the pages show comes from the setting.
PHONE = "+12125550123"
SHOWN = "(212) 555-0123"
TEL_LINK = f'<a href="tel:{PHONE}"'


@pytest.fixture
def practice_phone(settings: Any) -> str:
    settings.PRACTICE_PHONE = PHONE
    return PHONE


def tel_links(html: str) -> list[str]:
    """The text of every tap-to-call link to PHONE on a page."""
    return re.findall(rf'<a href="tel:{re.escape(PHONE)}"[^>]*>([^<]*)</a>', html)


# --- Start-up -------------------------------------------------------------------------


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in ("PRACTICE_PHONE", "VAR_DIR")}
    clean.update(DEBUG="1", VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("value", ["not a phone", "12", "", "+1 555 010 0199 0199 0199 0199"])
def test_it_refuses_to_start_with_a_practice_phone_that_is_no_phone_number(value, tmp_path):
    result = manage(tmp_path, "check", PRACTICE_PHONE=value)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert "PRACTICE_PHONE" in last_line


def test_it_reads_the_practice_phone_as_the_form_reads_a_patient_s_and_keeps_it_in_e164(tmp_path):
    code = "from django.conf import settings; print(settings.PRACTICE_PHONE)"
    result = manage(tmp_path, "shell", "-c", code, PRACTICE_PHONE="(212) 555-0123")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == PHONE


def test_it_defaults_to_a_number_reserved_for_fiction(tmp_path):
    code = "from django.conf import settings; print(settings.PRACTICE_PHONE)"
    result = manage(tmp_path, "shell", "-c", code)

    assert result.returncode == 0, result.stderr
    # 555-0100 to 555-0199: the North American range set aside for examples.
    assert result.stdout.strip().splitlines()[-1].startswith("+1555010")


@pytest.mark.parametrize(
    ("e164", "shown"),
    [("+15550100199", "(555) 010-0199"), (PHONE, SHOWN), ("+442079460018", "+44 20 7946 0018")],
)
def test_it_writes_the_number_as_people_do_and_links_it_in_e164(e164, shown):
    assert phone_display(e164) == shown
    assert phone_href(e164) == f"tel:{e164}"


# --- Pages ------------------------------------------------------------------------------


def test_it_shows_the_number_staff_call_from_on_the_confirmation(client, practice_phone):
    html = client.get("/reset/submitted/K7QM-3XTD/").content.decode()

    assert SHOWN in tel_links(html)


@pytest.mark.django_db
@pytest.mark.parametrize("traits", [{}, {"in_progress": True}, {"waiting": True}, {"resolved": True}, {"closed": True}])
def test_it_shows_the_number_to_call_on_the_status_page_at_every_step(client, practice_phone, traits):
    request = ResetRequestFactory(**traits)

    html = client.get(request.get_status_url()).content.decode()

    # In what to do now, not only in the footer.
    now = html.split('id="now-heading"', 1)[1].split("</section>", 1)[0]
    assert SHOWN in tel_links(now)


@pytest.mark.django_db
def test_it_says_on_the_404_page_whom_to_call_and_where_to_go(client, practice_phone):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    html = response.content.decode()
    assert SHOWN in tel_links(html)
    assert 'href="/"' in html  # the guide
    assert 'href="/reset/"' in html  # the form
    main = html.split('<main id="main"', 1)[1].split("</main>", 1)[0]
    for technical in ("404", "Http404", "Traceback", "URLconf", "DEBUG", "resolver", "Not Found"):
        assert technical not in main


# --- Emails -------------------------------------------------------------------------------


PATIENT_EMAILS = [
    ("acknowledgment", {}),
    ("resolved", {"resolved": True, "outcome": "reinvited"}),
    ("resolved", {"resolved": True, "outcome": "email_corrected"}),
    ("resolved", {"resolved": True, "outcome": "self_service"}),
    ("closed", {"closed": True, "close_reason": "unverified"}),
    ("closed", {"closed": True, "close_reason": "duplicate"}),
    ("closed", {"closed": True, "close_reason": "withdrawn"}),
    ("closed", {"closed": True, "close_reason": "other"}),
]


def parts(outbound: OutboundEmail) -> tuple[str, str]:
    message = build_message(outbound)
    parsed: Any = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)
    return (
        parsed.get_body(preferencelist=("plain",)).get_content(),
        parsed.get_body(preferencelist=("html",)).get_content(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize(("kind", "traits"), PATIENT_EMAILS)
def test_it_puts_the_practice_phone_in_every_patient_email(practice_phone, kind, traits, language):
    outbound = OutboundEmailFactory(reset=ResetRequestFactory(language=language, **traits), kind=kind)

    text, html = parts(outbound)

    assert SHOWN in text
    assert "tel:" not in text
    # Told to call, and in the sign-off.
    assert len(tel_links(html)) >= 2
    assert set(tel_links(html)) == {SHOWN}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["staff_new_request", "staff_overdue_digest"])
def test_it_leaves_the_staff_emails_as_they_were(practice_phone, kind):
    reset = ResetRequestFactory() if kind == "staff_new_request" else None
    outbound = OutboundEmailFactory(reset=reset, kind=kind, to="staff@practice.example")

    text, html = parts(outbound)

    assert SHOWN not in text
    assert TEL_LINK not in html
