"""A patient email rendered once per kind, language and settings, then filled
in with each email's own values (requests_app/outbox/filled_in.py): every
email reads, byte for byte, as if rendered on its own, and nothing of one
patient is kept for the next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.template import engines

from requests_app.models import OutboundEmail
from requests_app.outbox import filled_in
from requests_app.outbox.render import build_message
from requests_app.templatetags.email_fragments import kept_fragments

from .factories import OutboundEmailFactory, ResetRequestFactory, outbound_email_of_kind
from .support.mail_parts import everything

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 14, 0, 31, tzinfo=UTC)

PATIENT_KINDS = ["acknowledgment", "resolved", "closed", "reopened"]
NAMES = ["Ann", "", "<Bob & Co>", "José  Peña", "50% {x} %(a)s", 'O\'Brien "Jr"', "Zoë\u200d"]


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def alone(row: OutboundEmail) -> str:
    return everything(build_message(OutboundEmail.objects.select_related("reset").get(pk=row.pk)))


def through_the_store(row: OutboundEmail) -> str:
    return everything(build_message(OutboundEmail.objects.select_related("reset").get(pk=row.pk), kept_fragments()))


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("kind", PATIENT_KINDS)
def test_every_patient_email_reads_as_rendered_on_its_own(kind, language, settings):
    settings.PRACTICE_NAME = "Clínica Peña & Hijos"
    rows = []
    for name in NAMES:
        for outcome, close_reason in [
            ("email_corrected", "unverified"),
            ("self_service", "withdrawn"),
            ("", "duplicate"),
        ]:
            reset = ResetRequestFactory(language=language, first_name=name, outcome=outcome, close_reason=close_reason)
            rows.append(OutboundEmailFactory(reset=reset, kind=kind))

    expected = [alone(row) for row in rows]
    assert [through_the_store(row) for row in rows] == expected
    # The second time from what the first left in the store.
    assert [through_the_store(row) for row in rows] == expected
    assert any(key[0] == "email" for key in kept_fragments()[language])
    assert "&lt;Bob &amp; Co&gt;" in expected[6]


def test_nothing_of_a_patient_is_kept():
    patient = ResetRequestFactory(first_name="Unmistakable", email="unmistakable@example.com")
    row = OutboundEmailFactory(reset=patient)

    through_the_store(row)

    kept = repr(kept_fragments())
    for detail in (patient.first_name, patient.reference, patient.status_secret, patient.email):
        assert detail not in kept


@pytest.mark.parametrize("kind", ["message", "staff_new_request"])
def test_an_email_with_more_of_its_own_is_rendered_on_its_own(kind, settings):
    settings.STAFF_NOTIFY_EMAIL = "desk@practice.example"
    row = outbound_email_of_kind(kind, language="es")

    assert through_the_store(row) == alone(row)
    assert not any(key[0] == "email" for store in kept_fragments().values() for key in store)


def template(text: str) -> Any:
    return engines["django"].from_string("{% load i18n email_fragments %}" + text).template


@pytest.mark.parametrize(
    "text",
    [
        "{{ first_name }} {{ reference }} {{ status_url }}",
        "{% if first_name %}{% blocktranslate %}Dear {{ first_name }},{% endblocktranslate %}{% endif %}",
        "{% blocktranslate with name=first_name %}Dear {{ name }},{% endblocktranslate %}",
        '{% autoescape off %}{% translate "Hello" %} {{ reference }}{% endautoescape %}',
        "{% if outcome == 'reset' %}{{ reference }}{% elif first_name %}x{% else %}y{% endif %}",
        "{% fixed %}{{ practice_name }}{% endfixed %}{{ practice_name|upper }}",
    ],
)
def test_a_template_that_prints_its_values_as_they_are_qualifies(text):
    assert filled_in._uses_as_they_are(template(text))


@pytest.mark.parametrize(
    "text",
    [
        "{{ first_name|upper }}",
        "{{ practice_name|default:first_name }}",
        "{{ reference.0 }}",
        "{% if first_name == 'Ann' %}x{% endif %}",
        "{% if not first_name %}x{% endif %}",
        "{% with name=first_name %}{{ name }}{% endwith %}",
        "{% blocktranslate with name=first_name|title %}Dear {{ name }}{% endblocktranslate %}",
        "{% blocktranslate asvar greeting %}Dear {{ first_name }}{% endblocktranslate %}{{ greeting }}",
        "{% blocktranslate count n=reference %}one{% plural %}many{% endblocktranslate %}",
        "{% translate first_name %}",
        "{% for c in reference %}{{ c }}{% endfor %}",
        '{% include "emails/_closing.txt" with name=first_name|lower %}',
        "{% include template_name %}",
    ],
)
def test_a_template_that_does_anything_else_with_them_does_not(text):
    with pytest.raises(filled_in._Unknown):
        filled_in._uses_as_they_are(template(text))


def test_the_patient_kinds_qualify():
    assert [kind for kind in OutboundEmail.Kind.values if filled_in.qualifies(kind)] == [
        "acknowledgment",
        "resolved",
        "closed",
        "reopened",
        "message",  # its text is its own: its context keeps it from qualifying (above)
    ]
