"""{% fixed %} (requests_app/templatetags/email_fragments.py): what the email
templates render the same for every email is rendered once per process,
language and settings — and every email still reads as if rendered on its own."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.template import TemplateSyntaxError, engines
from django.utils import translation

from requests_app.models import OutboundEmail
from requests_app.outbox.render import build_message, reply_by_text
from requests_app.outbox.send import email_send_many
from requests_app.templatetags.email_fragments import kept_fragments

from .factories import OutboundEmailFactory, ResetRequestFactory
from .support.mail_parts import everything

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def from_string(text: str) -> Any:
    return engines["django"].from_string("{% load i18n email_fragments %}" + text)


def test_a_batch_s_emails_read_as_each_one_rendered_on_its_own(settings):
    settings.PRACTICE_NAME = "Clínica Peña"
    patients = [
        ResetRequestFactory(language="es", first_name="José"),
        ResetRequestFactory(language="en", first_name="Ann"),
        ResetRequestFactory(language="es", first_name=""),
        ResetRequestFactory(language="en", first_name="<Bob & Co>"),
    ]
    rows = [OutboundEmailFactory(reset=patient) for patient in patients]
    rows += [OutboundEmailFactory(reset=patients[0], kind=kind) for kind in ("resolved", "closed", "reopened")]
    rows.append(OutboundEmailFactory(reset=patients[1], kind=OutboundEmail.Kind.STAFF_NEW_REQUEST))
    alone = [everything(build_message(OutboundEmail.objects.select_related("reset").get(pk=row.pk))) for row in rows]

    results = email_send_many(email_ids=[row.pk for row in rows])

    assert {result.state for result in results.values()} == {"sent"}
    assert [everything(message) for message in mail.outbox] == alone
    assert "José" in alone[0] and "Ann" in alone[1] and "&lt;Bob &amp; Co&gt;" in alone[3]


def test_the_next_batch_takes_them_as_the_first_left_them():
    email_send_many(email_ids=[OutboundEmailFactory().pk])
    kept = kept_fragments()
    assert list(kept) == ["en"]
    for key in kept["en"]:
        # A stretch's text, or a whole email's three parts (outbox/filled_in.py).
        kept["en"][key] = (("[as kept]",),) * 3 if key[0] == "email" else "[as kept]"

    email_send_many(email_ids=[OutboundEmailFactory().pk])

    first, second = (everything(message) for message in mail.outbox)
    assert "[as kept]" not in first
    assert "[as kept]" in second
    assert "(555) 010-0199" in first and "(555) 010-0199" not in second


def test_the_next_batch_reads_a_setting_changed_since(settings):
    email_send_many(email_ids=[OutboundEmailFactory().pk])
    settings.PRACTICE_PHONE = "+16175550100"

    email_send_many(email_ids=[OutboundEmailFactory().pk])

    first, second = (everything(message) for message in mail.outbox)
    assert "(555) 010-0199" in first
    assert "(617) 555-0100" in second and "(555) 010-0199" not in second


def test_the_reply_by_time_moves_with_the_clock_from_one_batch_to_the_next(time_machine):
    # The sentence with the reply-by time is a kept stretch like the others:
    # kept per minute, as its text changes.
    email_send_many(email_ids=[OutboundEmailFactory().pk])
    time_machine.move_to(NOW + timedelta(minutes=1, seconds=30), tick=False)

    email_send_many(email_ids=[OutboundEmailFactory().pk])

    first, second = (everything(message) for message in mail.outbox)
    # Monday 10:00 at the practice plus 24 working hours, then a minute and a half later.
    assert first.count("We usually reset your portal access by Wednesday, June 17, 4:00 PM") == 2  # text, HTML
    assert second.count("We usually reset your portal access by Wednesday, June 17, 4:01 PM") == 2
    assert "4:00 PM" not in second


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_reply_by_text_is_the_date_filter_s_on_the_practice_s_clock(language, settings):
    settings.PRACTICE_TIME_ZONE = "America/Chicago"
    template = from_string(
        '{% load tz %}{% timezone "America/Chicago" %}'
        '{% translate "l, F j, g:i A" context "Date format: when the patient can expect their access reset, '
        'e.g. Tuesday, March 17, 1:00 PM" as reply_by_format %}{{ moment|date:reply_by_format }}{% endtimezone %}'
    )
    with translation.override(language):
        for moment in (NOW, NOW + timedelta(seconds=59.5), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)):
            assert reply_by_text(moment) == template.render({"moment": moment})


def test_a_stretch_is_kept_per_value_in_its_language_s_store():
    template = from_string('{% fixed %}{% translate "Kind regards," %} {{ practice_name }}{% endfixed %}')
    kept: dict[str, dict[Any, str]] = {}

    def rendered(language: str, name: str) -> str:
        # As build_message renders an email: in its language, with that language's store.
        with translation.override(language):
            return str(template.render({"practice_name": name, "outbox_fragments": kept.setdefault(language, {})}))

    assert rendered("es", "IFM") == "Saludos cordiales, IFM"
    assert rendered("en", "IFM") == "Kind regards, IFM"
    assert rendered("en", "Other") == "Kind regards, Other"
    assert rendered("es", "IFM") == "Saludos cordiales, IFM"
    assert {language: len(store) for language, store in kept.items()} == {"es": 1, "en": 2}


def test_a_batch_in_two_languages_keeps_each_language_s_stretches_apart():
    english, spanish = ResetRequestFactory(language="en"), ResetRequestFactory(language="es")
    rows = [OutboundEmailFactory(reset=patient) for patient in (english, spanish, english, spanish)]

    email_send_many(email_ids=[row.pk for row in rows])

    texts = [everything(message) for message in mail.outbox]
    assert [("Kind regards," in text, "Saludos cordiales," in text) for text in texts] == [
        (True, False),
        (False, True),
        (True, False),
        (False, True),
    ]
    assert set(kept_fragments()) == {"en", "es"}


def test_no_email_template_switches_language():
    # A kept stretch takes its language from the store it is given (the
    # email's language), not from the active one: a template that switched
    # language with {% language %} would get the other language's text.
    templates = sorted((Path(__file__).resolve().parent.parent / "templates" / "emails").iterdir())
    assert len(templates) > 20
    for path in templates:
        assert not re.search(r"{%-?\s*language\b", path.read_text()), path.name


def test_without_a_batch_it_renders_every_time():
    template = from_string("{% fixed %}{{ practice_name }}{% endfixed %}")

    assert template.render({"practice_name": "A"}) == "A"
    assert template.render({"practice_name": "B"}) == "B"


@pytest.mark.parametrize(
    "inside",
    [
        "{{ first_name }}",
        "{% blocktranslate %}Dear {{ first_name }},{% endblocktranslate %}",
        "{% blocktranslate with name=first_name %}Dear {{ name }},{% endblocktranslate %}",
        "{{ practice_name|default:reference }}",
        '{% translate "Hello" as greeting %}',
        "{% if practice_name %}x{% endif %}",
        '{% include "emails/_closing.txt" %}',
        "{{ reply_by|date:'Y' }}",
    ],
)
def test_it_refuses_anything_but_the_practice_s_settings_and_translations(inside):
    with pytest.raises(TemplateSyntaxError):
        from_string("{% fixed %}" + inside + "{% endfixed %}")


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_reply_by_time_reads_as_django_s_date_filter_writes_it(language):
    template = from_string(
        '{% load tz %}{% timezone "America/New_York" %}'
        '{{ moment|date_to_the_minute:"l, F j, g:i A" }} = {{ moment|date:"l, F j, g:i A" }}{% endtimezone %}'
    )
    minute = datetime(2026, 11, 1, 5, 59, tzinfo=UTC)  # 1:59 AM in New York, the hour before DST ends

    with translation.override(language):
        for seconds in (0, 1.5, 59.999):
            for offset in (0, 60, 3600, 86400 * 40):
                moment = minute + timedelta(seconds=offset + seconds)
                ours, django_s = str(template.render({"moment": moment})).split(" = ")
                assert ours == django_s


def test_a_format_with_seconds_is_not_kept_for_the_minute():
    template = from_string('{{ moment|date_to_the_minute:"H:i:s" }}')

    assert template.render({"moment": datetime(2026, 6, 15, 14, 0, 1, tzinfo=UTC)}).endswith(":01")
    assert template.render({"moment": datetime(2026, 6, 15, 14, 0, 2, tzinfo=UTC)}).endswith(":02")
