"""The reset form's errors, as the GOV.UK Design System has them: one
specific message per field and rule ("Enter your date of birth", never
"This field is required"), above the input inside the field's group (a
group of radio buttons: at the top of its fieldset), an error summary at the
top that takes the focus and links to each input to fix (a date's first box
at fault, a group's first option), everything typed kept, in English and in
Spanish. Dates come as month, day and year boxes; the ISO value posted under
the field's own name is taken too.

The Spanish catalogue may not have these strings yet: the Spanish page is
checked against what gettext makes of each English message, so the tests
hold before and after the translation.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.core import mail
from django.utils import translation
from django.utils.translation import gettext

from requests_app.models import ResetRequest

from .conftest import family_data, valid_form_data

pytestmark = pytest.mark.django_db

# 11:00 in New York on Monday 15 June 2026.
NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)
SPANISH = {"HTTP_ACCEPT_LANGUAGE": "es"}


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def born(month: str, day: str, year: str, prefix: str = "date_of_birth") -> dict[str, str]:
    """The date of birth as typed into its boxes (no ISO value)."""
    return {f"{prefix}_month": month, f"{prefix}_day": day, f"{prefix}_year": year}


def form_with(**overrides: Any) -> dict[str, str]:
    """A valid POST of the rest of the form, as the page sends it: the
    visit date kept (ISO), the date of birth in boxes. ``date_of_birth``
    in the overrides replaces the boxes with an ISO value."""
    data = valid_form_data()
    del data["date_of_birth"]
    data.update(born("4", "23", "1980"))
    data["others_use_login"] = "no"
    if "date_of_birth" in overrides:
        for part in ("month", "day", "year"):
            del data[f"date_of_birth_{part}"]
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def post(client: Any, data: dict[str, Any], **extra: Any) -> Any:
    response = client.post("/reset/", data, **extra)
    assert response.status_code == 200
    assert ResetRequest.objects.count() == 0
    assert mail.outbox == []
    return response


def summary_links(html: str) -> list[tuple[str, str]]:
    summary = re.search(r'<div class="alert alert-danger error-summary"[^>]*>(.*?)</div>', html, re.DOTALL)
    assert summary, "no error summary"
    return re.findall(r'<li><a href="#([^"]+)">(.*?)</a></li>', summary[1], re.DOTALL)


def group_html(html: str, field_id: str) -> str:
    """The form group of one field: from its wrapper to the next one."""
    start = html.index(f'<div id="div_{field_id}"')
    following = html.find('<div id="div_', start + 1)
    return html[start : following if following != -1 else len(html)]


def unescape(text: str) -> str:
    return text.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")


# --- One message per field and rule ------------------------------------------------------

# (what is posted, the field, its message, where the summary's link leads)
CASES = [
    pytest.param({"first_name": ""}, "first_name", "Enter your first name", "id_first_name", id="first-name"),
    pytest.param({"last_name": None}, "last_name", "Enter your last name", "id_last_name", id="last-name-missing"),
    pytest.param(
        born("", "", ""), "date_of_birth", "Enter your date of birth", "id_date_of_birth_month", id="dob-empty"
    ),
    pytest.param(
        {"date_of_birth": ""}, "date_of_birth", "Enter your date of birth", "id_date_of_birth_month", id="dob-iso-empty"
    ),
    pytest.param(
        born("", "23", "1980"),
        "date_of_birth",
        "Date of birth must include a month",
        "id_date_of_birth_month",
        id="dob-no-month",
    ),
    pytest.param(
        born("4", "", "1980"),
        "date_of_birth",
        "Date of birth must include a day",
        "id_date_of_birth_day",
        id="dob-no-day",
    ),
    pytest.param(
        born("4", "23", ""),
        "date_of_birth",
        "Date of birth must include a year",
        "id_date_of_birth_year",
        id="dob-no-year",
    ),
    pytest.param(
        born("4", "", ""),
        "date_of_birth",
        "Date of birth must include a day and year",
        "id_date_of_birth_day",
        id="dob-no-day-or-year",
    ),
    pytest.param(
        born("", "", "1980"),
        "date_of_birth",
        "Date of birth must include a month and day",
        "id_date_of_birth_month",
        id="dob-no-month-or-day",
    ),
    pytest.param(
        born("", "23", ""),
        "date_of_birth",
        "Date of birth must include a month and year",
        "id_date_of_birth_month",
        id="dob-no-month-or-year",
    ),
    pytest.param(
        born("2", "30", "1980"),
        "date_of_birth",
        "Date of birth must be a real date",
        "id_date_of_birth_month",
        id="dob-30-february",
    ),
    pytest.param(
        born("13", "23", "1980"),
        "date_of_birth",
        "Date of birth must be a real date",
        "id_date_of_birth_month",
        id="dob-month-13",
    ),
    pytest.param(
        born("4", "32", "1980"),
        "date_of_birth",
        "Date of birth must be a real date",
        "id_date_of_birth_day",
        id="dob-day-32",
    ),
    pytest.param(
        born("4", "2x", "1980"),
        "date_of_birth",
        "Date of birth must be a real date",
        "id_date_of_birth_day",
        id="dob-not-a-number",
    ),
    pytest.param(
        born("4", "23", "80"),
        "date_of_birth",
        "Year of birth must include 4 numbers",
        "id_date_of_birth_year",
        id="dob-two-digit-year",
    ),
    pytest.param(
        born("6", "16", "2026"),
        "date_of_birth",
        "Date of birth must be today or in the past",
        "id_date_of_birth_month",
        id="dob-tomorrow",
    ),
    pytest.param(
        born("6", "14", "1896"),
        "date_of_birth",
        "Date of birth must be the same as or after June 15, 1896",
        "id_date_of_birth_month",
        id="dob-over-130-years",
    ),
    pytest.param(
        {"date_of_birth": "04/23/1980"},
        "date_of_birth",
        "Date of birth must be a real date",
        "id_date_of_birth_month",
        id="dob-iso-unreadable",
    ),
    pytest.param({"email": ""}, "email", "Enter your email address", "id_email", id="email-empty"),
    pytest.param(
        {"email": "maria@"},
        "email",
        "Enter an email address in the correct format, like name@example.com",
        "id_email",
        id="email-format",
    ),
    pytest.param({"phone": ""}, "phone", "Enter your phone number", "id_phone", id="phone-empty"),
    pytest.param(
        {"phone": "call me"},
        "phone",
        "Enter a phone number we can call or text, for example 555-201-3344.",
        "id_phone",
        id="phone-unreadable",
    ),
    pytest.param({"reason": None}, "reason", "Choose what went wrong", "id_reason_0", id="reason-missing"),
    pytest.param({"reason": "bogus"}, "reason", "Choose what went wrong", "id_reason_0", id="reason-unknown"),
    pytest.param(
        {"details": "x" * 1001},
        "details",
        "Anything else you tell us must be 1,000 characters or fewer",
        "id_details",
        id="details-too-long",
    ),
    pytest.param(
        {"appointment_date": ""},
        "appointment_date",
        "Enter the date of your visit",
        "id_appointment_date_month",
        id="visit-empty",
    ),
    pytest.param(
        {"appointment_date": "2026-06-16"},
        "appointment_date",
        "The date of your visit must be today or in the past",
        "id_appointment_date_month",
        id="visit-tomorrow",
    ),
    pytest.param(
        {"others_use_login": "yes"},
        "others_use_login",
        "Enter the name and date of birth of each person who uses this login, or choose “No”",
        "id_others_use_login_0",
        id="family-yes-but-nobody",
    ),
]


@pytest.mark.parametrize(("data", "field", "message", "target"), CASES)
def test_it_names_what_to_do_for_each_field_and_rule(client, data, field, message, target):
    response = post(client, form_with(**data))

    assert response.context["form"].errors[field] == [message]
    html = response.content.decode()
    assert (target, message) in [(href, unescape(text)) for href, text in summary_links(html)]
    assert f'id="{target}"' in html
    assert "This field is required" not in html


@pytest.mark.parametrize(("data", "field", "message", "target"), CASES)
def test_it_says_the_same_in_spanish(client, data, field, message, target):
    response = post(client, form_with(**data), **SPANISH)

    html = response.content.decode()
    assert '<html lang="es">' in html
    assert response["Content-Language"] == "es"
    assert "El enlace de invitación venció" in html  # the page around it is Spanish
    with translation.override("es"):
        if field == "date_of_birth" and "1896" in message:
            expected = gettext("Date of birth must be the same as or after %(date)s") % {"date": "15 de junio de 1896"}
        else:
            expected = gettext(message)
    assert response.context["form"].errors[field] == [expected]
    assert (target, expected) in [(href, unescape(text)) for href, text in summary_links(html)]


def test_it_never_names_a_date_format_the_boxes_do_not_show(client):
    for data in (born("13", "40", "80"), {"date_of_birth": "1980/04/23"}, {"appointment_date": "06/10/2026"}):
        html = post(client, form_with(**data)).content.decode()

        assert "YYYY" not in html
        assert "AAAA" not in html


def test_it_gives_family_members_messages_of_their_own(client):
    data = {**form_with(others_use_login="yes"), **family_data(("Ana", "", ""))}
    data.update(born("", "", "", prefix="family-0-date_of_birth"))

    html = post(client, data).content.decode()

    assert [(href, unescape(text)) for href, text in summary_links(html)] == [
        ("id_family-0-last_name", "Family member 1: Enter their last name"),
        ("id_family-0-date_of_birth_month", "Family member 1: Enter their date of birth"),
    ]
    assert "Enter their last name</p>" in group_html(html, "id_family-0-last_name")


def test_it_judges_a_family_members_date_of_birth_as_the_patients(client):
    data = {**form_with(others_use_login="yes"), **family_data(("Ana", "Lopez", ""))}
    data.update(born("9", "", "2012", prefix="family-0-date_of_birth"))

    html = post(client, data).content.decode()

    assert ("id_family-0-date_of_birth_day", "Family member 1: Date of birth must include a day") in [
        (href, unescape(text)) for href, text in summary_links(html)
    ]


def test_it_lists_every_error_at_once_in_the_order_of_the_page(client):
    data = {
        **form_with(first_name="", email="maria@", reason=None, others_use_login="yes"),
        **born("4", "", "1980"),
        **family_data(("Ana", "", "2012-09-01")),
    }

    html = post(client, data).content.decode()

    assert [href for href, _text in summary_links(html)] == [
        "id_first_name",
        "id_date_of_birth_day",
        "id_email",
        "id_reason_0",
        "id_family-0-last_name",
    ]


# --- Where the messages go -------------------------------------------------------------


def test_it_puts_a_fields_message_above_its_input_inside_its_group(client):
    html = post(client, form_with(email="maria@")).content.decode()

    group = group_html(html, "id_email")
    label, error, field = (group.index(s) for s in ("<label", 'class="error-message', "<input"))
    assert label < error < field
    assert re.search(r'<input[^>]*aria-invalid="true"[^>]*aria-describedby="id_email_error"', group)
    assert 'id="id_email_error"' in group
    assert "form-group-error" in group


def test_it_puts_the_radio_groups_message_at_the_top_of_its_fieldset(client):
    html = post(client, form_with(reason=None)).content.decode()

    group = group_html(html, "id_reason")
    legend, error, first, last = (
        group.index(s) for s in ("<legend", 'id="id_reason_error"', 'id="id_reason_0"', 'id="id_reason_4"')
    )
    assert group.index("<fieldset") < legend < error < first < last
    assert re.search(r'<fieldset aria-describedby="id_reason_error">', group)


def test_it_marks_only_the_boxes_at_fault_and_describes_the_date_by_its_message(client):
    html = post(client, form_with(**born("13", "23", "1980"))).content.decode()

    group = group_html(html, "id_date_of_birth")
    assert 'aria-describedby="id_date_of_birth_helptext id_date_of_birth_error"' in group
    assert group.index('id="id_date_of_birth_error"') < group.index('name="date_of_birth_month"')
    marked = re.findall(r'<input[^>]*name="date_of_birth_(\w+)"[^>]*aria-invalid="true"', group)
    assert marked == ["month"]


def test_it_puts_the_summary_first_with_the_focus_and_says_so_in_the_title(client):
    html = post(client, form_with(first_name="")).content.decode()

    main = html[html.index("<main") :]
    assert re.match(r'<main[^>]*>\s*<div class="alert alert-danger error-summary" role="alert"[^>]*>', main)
    assert re.search(r'id="error-summary" tabindex="-1" autofocus', main)
    assert re.search(r"<title>Error: ", html)


# --- Everything typed kept ---------------------------------------------------------------


def test_it_keeps_everything_typed_on_an_error(client):
    typed = form_with(
        first_name="Zelda",
        last_name="Quattlebaum",
        email="zelda@example",
        phone="555-987-1234",
        reason="security_code",
        details="Tried twice.",
        others_use_login="yes",
        **born("11", "2", "1975"),
    )
    typed.update(family_data(("Ana", "Quattlebaum", "")))
    typed.update(born("9", "1", "2012", prefix="family-0-date_of_birth"))

    html = post(client, typed).content.decode()

    for value in ("Zelda", "Quattlebaum", "zelda@example", "555-987-1234", "11", "2", "1975", "Ana", "9", "2012"):
        assert f'value="{value}"' in html, value
    assert re.search(r'value="security_code"[^>]*checked', html)
    assert re.search(r'value="yes"[^>]*checked', html)
    assert "Tried twice.</textarea>" in html
    # The visit date stays the answer given on the first page.
    assert f'<input type="hidden" name="appointment_date" value="{typed["appointment_date"]}">' in html


def test_it_shows_the_email_address_back_before_the_button_when_the_page_comes_back(client):
    html = post(client, form_with(phone="", email="Maria.Lopez@example.com")).content.decode()

    check = html[html.index('id="email-check"') :]
    assert check.index("Maria.Lopez@example.com") < check.index("Send my request")
    assert "Check your email address" in check
    assert re.search(r'<div class="callout" id="email-check">', html)  # not hidden


def test_it_escapes_the_email_address_it_shows_back(client):
    html = post(client, form_with(phone="", email='"<b>x</b>"@example.com')).content.decode()

    assert "<b>x</b>" not in html


# --- Dates: boxes or ISO -------------------------------------------------------------------


def test_it_accepts_the_date_of_birth_as_boxes(client, submit):
    response = submit(form_with(**born("04", "3", "1980")))

    assert response.status_code == 303
    assert ResetRequest.objects.get().date_of_birth == date(1980, 4, 3)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"date_of_birth": "1980-04-23"}, id="date-of-birth"),
        pytest.param({"appointment_date": "2026-06-10"}, id="visit"),
    ],
)
def test_it_accepts_the_iso_value_under_the_plain_name(client, submit, data):
    response = submit(form_with(**data))

    assert response.status_code == 303


def test_it_takes_the_iso_value_over_the_boxes_a_page_left_empty(client, submit):
    # A client that fills a page's form in: the page's empty boxes go back
    # with the ISO value the client put under the plain name.
    response = submit({**form_with(date_of_birth="1980-04-23"), **born("", "", "")})

    assert response.status_code == 303
    assert ResetRequest.objects.get().date_of_birth == date(1980, 4, 23)


def test_it_accepts_a_family_members_date_of_birth_as_iso_or_boxes(client, submit):
    data = {**form_with(others_use_login="yes"), **family_data(("Ana", "Lopez", "2012-09-01"), ("Luis", "Lopez", ""))}
    data.update(born("1", "30", "2015", prefix="family-1-date_of_birth"))

    response = submit(data)

    assert response.status_code == 303
    assert list(ResetRequest.objects.get().family_members.values_list("date_of_birth", flat=True)) == [
        date(2012, 9, 1),
        date(2015, 1, 30),
    ]


# --- "Does anyone else use this login?" -----------------------------------------------------


def test_it_ignores_the_family_rows_after_no(client, submit):
    response = submit({**form_with(others_use_login="no"), **family_data(("Ana", "", ""))})

    assert response.status_code == 303
    assert ResetRequest.objects.get().family_members.count() == 0


def test_it_reads_the_family_rows_without_an_answer_as_before(client):
    data = form_with(others_use_login=None)
    data.update(family_data(("Ana", "", "2012-09-01")))

    response = post(client, data)

    assert set(response.context["family"].errors[0]) == {"last_name"}
    assert '<div class="family-rows" id="family-section">' in response.content.decode()


def test_it_shows_the_rows_after_yes_and_hides_them_otherwise(client):
    for answer, shown in (("yes", True), ("no", False), (None, False)):
        html = post(client, form_with(first_name="", others_use_login=answer)).content.decode()

        assert ('<div class="family-rows" id="family-section">' in html) is shown, answer
        assert ('<div class="family-rows" id="family-section" hidden>' in html) is not shown, answer
