"""The reset-request form at /reset/: every rule of the form's field table (docs/contract.md).

A valid POST stores the request and redirects (303) to the confirmation; an
invalid one answers 200 with the field's error and stores and sends nothing;
input no browser would send answers 200 or 400, never 500.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from requests_app.models import FamilyMember, OutboundEmail, RequestEvent, ResetRequest

from .conftest import family_data, valid_form_data

# 11:00 in New York: the practice's "today" is the same day as UTC's.
NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)
REQUIRED = ["first_name", "last_name", "date_of_birth", "email", "phone", "appointment_date", "reason"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def assert_nothing_stored() -> None:
    assert ResetRequest.objects.count() == 0
    assert FamilyMember.objects.count() == 0
    assert RequestEvent.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    assert mail.outbox == []


def assert_rejected(response: Any, field: str) -> None:
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert_nothing_stored()


def assert_accepted(response: Any) -> ResetRequest:
    assert response.status_code == 303
    request = ResetRequest.objects.get()
    assert response["Location"] == f"/reset/submitted/{request.reference}/"
    return request


# --- The page ------------------------------------------------------------------


def visit_answered(client: Any, visit: str = "2026-06-10") -> str:
    """The rest of the form, as the date step serves it for ``visit``."""
    response = client.post("/reset/", {"appointment_date": visit})
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_form_with_the_field_names_of_the_spec(client):
    # Eligibility first: GET asks for the visit date alone (as month, day
    # and year boxes) and carries every hidden value a one-step POST needs;
    # the rest of the form comes once the date is past the window.
    response = client.get("/reset/")

    assert response.status_code == 200
    html = response.content.decode()
    for name in ["appointment_date_month", "appointment_date_day", "appointment_date_year"]:
        assert f'name="{name}"' in html
    for name in ["csrfmiddlewaretoken", "form_started", "family-TOTAL_FORMS", "family-INITIAL_FORMS"]:
        assert f'name="{name}"' in html
    assert 'name="first_name"' not in html

    html = visit_answered(client)
    names = [*REQUIRED, "details", "family-TOTAL_FORMS", "family-INITIAL_FORMS"]
    names += ["date_of_birth_month", "date_of_birth_day", "date_of_birth_year"]
    for name in [n for n in names if n != "date_of_birth"]:
        assert f'name="{name}"' in html
    assert '<input type="hidden" name="appointment_date" value="2026-06-10">' in html


def test_it_shows_what_was_typed_and_the_errors_after_the_empty_form_was_served(client, submit):
    visit_answered(client)  # the empty rest of the form, now kept rendered

    response = submit(valid_form_data(first_name="Zelda", email="not an address"))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="Zelda"' in html
    assert "Enter an email address in the correct format, like name@example.com" in html
    assert ResetRequest.objects.count() == 0


def test_it_accepts_a_valid_form_and_stores_what_was_typed(submit):
    response = submit(valid_form_data(details="Tried twice on my phone."))

    request = assert_accepted(response)
    assert request.first_name == "Maria"
    assert request.last_name == "Lopez"
    assert request.date_of_birth.isoformat() == "1980-04-23"
    assert request.email == "maria.lopez@example.com"
    assert request.phone == "+15552013344"
    assert request.appointment_date.isoformat() == "2026-06-10"
    assert request.reason == "link_expired"
    assert request.details == "Tried twice on my phone."
    assert request.status == "new"


# --- Required fields -----------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED)
def test_it_rejects_a_form_without_a_required_field(submit, field):
    data = valid_form_data()
    del data[field]

    assert_rejected(submit(data), field)


@pytest.mark.parametrize("field", REQUIRED)
def test_it_rejects_a_required_field_left_empty(submit, field):
    assert_rejected(submit(valid_form_data(**{field: ""})), field)


# --- Names ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_it_rejects_a_name_of_only_whitespace(submit, field):
    assert_rejected(submit(valid_form_data(**{field: " \t  "})), field)


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_it_rejects_a_name_of_101_characters(submit, field):
    assert_rejected(submit(valid_form_data(**{field: "A" * 101})), field)


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_it_accepts_a_name_of_100_characters(submit, field):
    request = assert_accepted(submit(valid_form_data(**{field: "A" * 100})))

    assert getattr(request, field) == "A" * 100


def test_it_trims_the_spaces_around_names(submit):
    # 100 characters inside the spaces: the limit applies after trimming.
    request = assert_accepted(submit(valid_form_data(first_name="  Maria  ", last_name=" " + "L" * 100 + " ")))

    assert request.first_name == "Maria"
    assert request.last_name == "L" * 100


def test_it_keeps_names_in_any_script(submit):
    request = assert_accepted(submit(valid_form_data(first_name="Zoë-Nguyễn", last_name="李 O'Brien")))

    assert request.first_name == "Zoë-Nguyễn"
    assert request.last_name == "李 O'Brien"


# --- Date of birth -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["04/23/1980", "23/04/1980", "23.04.1980", "1980/04/23", "April 23, 1980", "19800423", "1980-02-30", "tomorrow"],
)
def test_it_rejects_a_date_of_birth_that_is_not_an_iso_date(submit, value):
    assert_rejected(submit(valid_form_data(date_of_birth=value)), "date_of_birth")


def test_it_rejects_a_date_of_birth_in_the_future(submit):
    assert_rejected(submit(valid_form_data(date_of_birth="2026-06-16")), "date_of_birth")


def test_it_rejects_a_date_of_birth_in_the_future_of_the_practice(submit, time_machine):
    # 01:00 UTC on the 16th is still the 15th in New York.
    time_machine.move_to(datetime(2026, 6, 16, 1, 0, tzinfo=UTC), tick=False)

    assert_rejected(submit(valid_form_data(date_of_birth="2026-06-16")), "date_of_birth")


def test_it_accepts_a_date_of_birth_of_today(submit):
    # The visit cannot be before the birth, and a visit today is inside the
    # 48-hour window: every field passes, and the patient is told to wait.
    response = submit(valid_form_data(date_of_birth="2026-06-15", appointment_date="2026-06-15"))

    assert response.status_code == 200
    assert "requests_app/too_early.html" in [t.name for t in response.templates]
    assert_nothing_stored()


def test_it_rejects_a_date_of_birth_more_than_130_years_ago(submit):
    assert_rejected(submit(valid_form_data(date_of_birth="1896-06-14")), "date_of_birth")


def test_it_accepts_a_date_of_birth_exactly_130_years_ago(submit):
    request = assert_accepted(submit(valid_form_data(date_of_birth="1896-06-15")))

    assert request.date_of_birth.isoformat() == "1896-06-15"


# --- Email ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["maria", "maria@", "@example.com", "maria@example", "maria lopez@example.com", "maria@@example.com"],
)
def test_it_rejects_an_invalid_email(submit, value):
    assert_rejected(submit(valid_form_data(email=value)), "email")


def long_email(length: int) -> str:
    """A valid address of exactly ``length`` characters."""
    local = "m" * 64
    labels = []
    remaining = length - len(local) - 1 - len(".com")
    while remaining > 0:
        label = min(remaining, 63)
        if remaining - label == 1:  # no room for a dot and a 1-char label
            label -= 1
        labels.append("d" * label)
        remaining -= label + 1
    address = f"{local}@{'.'.join(labels)}.com"
    assert len(address) == length
    return address


def test_it_rejects_an_email_longer_than_254_characters(submit):
    assert_rejected(submit(valid_form_data(email=long_email(255))), "email")


def test_it_accepts_an_email_of_254_characters(submit):
    address = long_email(254)

    request = assert_accepted(submit(valid_form_data(email=address)))

    assert request.email == address


def test_it_stores_the_email_in_lowercase(submit):
    request = assert_accepted(submit(valid_form_data(email="  Maria.Lopez@Example.COM ")))

    assert request.email == "maria.lopez@example.com"
    assert mail.outbox[0].to == ["maria.lopez@example.com"]


# --- Phone ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["call me", "12", "555", "+1 555", "1" * 32, "555-201-3344-555-201-3344", "📞"])
def test_it_rejects_a_phone_number_staff_cannot_call(submit, value):
    assert_rejected(submit(valid_form_data(phone=value)), "phone")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("555-201-3344", "+15552013344"),
        ("(555) 201 3344", "+15552013344"),
        ("+1 555.201.3344", "+15552013344"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_it_stores_the_phone_number_in_e164(submit, typed, stored):
    request = assert_accepted(submit(valid_form_data(phone=typed)))

    assert request.phone == stored


# --- Appointment date ----------------------------------------------------------


def test_it_rejects_an_appointment_date_in_the_future(submit):
    assert_rejected(submit(valid_form_data(appointment_date="2026-06-16")), "appointment_date")


@pytest.mark.parametrize("value", ["06/10/2026", "2026-06-31", "last week"])
def test_it_rejects_an_appointment_date_that_is_not_an_iso_date(submit, value):
    assert_rejected(submit(valid_form_data(appointment_date=value)), "appointment_date")


# --- Reason --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["link_expired", "never_received", "security_code", "shared_account", "other"])
def test_it_accepts_each_reason_of_the_spec(submit, value):
    request = assert_accepted(submit(valid_form_data(reason=value)))

    assert request.reason == value


@pytest.mark.parametrize("value", ["LINK_EXPIRED", "expired", "The invitation link expired", "other "])
def test_it_rejects_a_reason_that_is_not_one_of_the_five(submit, value):
    assert_rejected(submit(valid_form_data(reason=value)), "reason")


# --- Details -------------------------------------------------------------------


def test_it_rejects_details_longer_than_1000_characters(submit):
    assert_rejected(submit(valid_form_data(details="x" * 1001)), "details")


def test_it_accepts_details_of_1000_characters(submit):
    request = assert_accepted(submit(valid_form_data(details="x" * 1000)))

    assert request.details == "x" * 1000


def test_it_counts_a_line_break_in_the_details_as_one_character(submit):
    # Browsers send a textarea's line breaks as CRLF, but their maxlength=1000
    # counts each as one character: what the page allowed must be accepted.
    typed = ("x" * 99 + "\n") * 10

    request = assert_accepted(submit(valid_form_data(details=typed.replace("\n", "\r\n"))))

    assert request.details == typed.strip()


def test_it_accepts_a_form_without_details(submit):
    data = valid_form_data()
    del data["details"]

    request = assert_accepted(submit(data))

    assert request.details == ""


# --- Family members who share the login ---------------------------------------


def test_it_accepts_a_post_without_any_family_fields(submit):
    data = valid_form_data()
    assert not any(key.startswith("family-") for key in data)

    request = assert_accepted(submit(data))

    assert request.family_members.count() == 0


def test_it_stores_the_family_members_named_on_the_request(submit):
    family = family_data((" Ana ", "Lopez ", "2012-09-01"), ("Luis", "Lopez", "2015-01-30"))

    request = assert_accepted(submit({**valid_form_data(), **family}))

    assert list(request.family_members.values_list("first_name", "last_name", "date_of_birth")) == [
        ("Ana", "Lopez", date(2012, 9, 1)),
        ("Luis", "Lopez", date(2015, 1, 30)),
    ]


# Names have no digits: six family members each with a name of their own.
FAMILY_NAMES = ["Ana", "Luis", "Eva", "Tomas", "Ines", "Pablo"]


def test_it_accepts_five_family_members(submit):
    members = [(name, "Lopez", f"201{i}-01-01") for i, name in enumerate(FAMILY_NAMES[:5])]

    request = assert_accepted(submit({**valid_form_data(), **family_data(*members)}))

    assert request.family_members.count() == 5


def test_it_rejects_six_family_members(submit):
    members = [(name, "Lopez", f"201{i}-01-01") for i, name in enumerate(FAMILY_NAMES)]

    response = submit({**valid_form_data(), **family_data(*members)})

    assert response.status_code == 200
    assert response.context["family"].non_form_errors()
    assert_nothing_stored()


def test_it_ignores_the_blank_family_row_the_page_shows(submit):
    request = assert_accepted(submit({**valid_form_data(), **family_data(("", "", ""))}))

    assert request.family_members.count() == 0


@pytest.mark.parametrize(
    ("member", "missing"),
    [
        (("Ana", "", ""), {"last_name", "date_of_birth"}),
        (("", "Lopez", ""), {"first_name", "date_of_birth"}),
        (("Ana", "Lopez", ""), {"date_of_birth"}),
        (("", "", "2012-09-01"), {"first_name", "last_name"}),
    ],
)
def test_it_rejects_a_half_filled_family_member(submit, member, missing):
    response = submit({**valid_form_data(), **family_data(member)})

    assert response.status_code == 200
    assert set(response.context["family"].errors[0]) == missing
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("date_of_birth", "09/01/2012"),
        ("date_of_birth", "2026-06-16"),
        ("date_of_birth", "1890-01-01"),
        ("first_name", "A" * 101),
        ("last_name", "   "),
    ],
)
def test_it_applies_the_patient_rules_to_family_members(submit, field, value):
    member = {"first_name": "Ana", "last_name": "Lopez", "date_of_birth": "2012-09-01", field: value}

    response = submit(
        {**valid_form_data(), **family_data((member["first_name"], member["last_name"], member["date_of_birth"]))}
    )

    assert response.status_code == 200
    assert field in response.context["family"].errors[0]
    assert_nothing_stored()


# --- Input no browser sends: 200 or 400, never 500, nothing stored --------------

NUL = "\x00"


@pytest.mark.parametrize("field", [*REQUIRED, "details"])
def test_it_rejects_a_nul_byte_in_any_field(submit, field):
    data = valid_form_data()
    data[field] = data[field][:3] + NUL + data[field][3:] if data[field] else NUL

    response = submit(data)

    assert response.status_code in (200, 400)
    assert_nothing_stored()


def test_it_rejects_a_nul_byte_in_a_family_member(submit):
    response = submit({**valid_form_data(), **family_data(("An" + NUL + "a", "Lopez", "2012-09-01"))})

    assert response.status_code in (200, 400)
    assert_nothing_stored()


def odd_posts() -> list[Any]:
    base = valid_form_data
    return [
        pytest.param(base(first_name="A" * 200_000), id="body-larger-than-the-limit"),
        pytest.param(base(details="x" * 50_000), id="huge-details"),
        pytest.param(base(phone="5" * 10_000), id="huge-phone"),
        pytest.param(base(date_of_birth="9" * 5_000), id="huge-date"),
        pytest.param(base(date_of_birth="99999-01-01"), id="five-digit-year"),
        pytest.param(base(date_of_birth="0000-01-01"), id="year-zero"),
        pytest.param(base(appointment_date="9999-12-31"), id="last-representable-day"),
        pytest.param(base(email="maría@exämple.com"), id="non-ascii-email"),
        pytest.param(base(email="maria@example.com\r\nBcc: victim@example.com"), id="header-injection-email"),
        pytest.param(base(email="\u202emoc.elpmaxe@airam"), id="rtl-override-email"),
        pytest.param(
            base(phone="\uff15\uff15\uff15-\uff12\uff10\uff11-\uff13\uff13\uff14\uff14-\uff19"), id="fullwidth-phone"
        ),
        pytest.param(base(reason="link_expired\u0301"), id="combining-mark-reason"),
        pytest.param(base(date_of_birth="\uff11\uff19\uff18\uff10-\uff10\uff14-\uff12\uff13x"), id="fullwidth-date"),
        pytest.param({**base(), "email": ["maria@example.com", "not-an-email"]}, id="duplicate-keys"),
        pytest.param({**base(), "reason": ["link_expired", "bogus"]}, id="duplicate-reason"),
        pytest.param({**base(), **{f"x{i}": "1" for i in range(250)}}, id="too-many-fields"),
        pytest.param({**base(), **family_data(), "family-TOTAL_FORMS": "abc"}, id="non-numeric-total-forms"),
        pytest.param({**base(), **family_data(), "family-TOTAL_FORMS": "-1"}, id="negative-total-forms"),
        pytest.param(
            {**base(), **family_data(), "family-TOTAL_FORMS": "9" * 30},
            id="enormous-total-forms",
        ),
        pytest.param(
            {**base(), "family-TOTAL_FORMS": "1", "family-0-first_name": "Ana"},
            id="management-form-without-initial-forms",
        ),
        pytest.param(
            {**base(), **family_data(("Ana", "Lopez", "2012-09-01")), "family-INITIAL_FORMS": "abc"},
            id="non-numeric-initial-forms",
        ),
        pytest.param(
            {**base(), **family_data(("", "", ""), total=1), "family-INITIAL_FORMS": "1"},
            id="blank-initial-form",
        ),
        pytest.param(
            {**base(), **family_data(*[("Ana", "Lopez", "2012-09-01")] * 5), "family-TOTAL_FORMS": "1000"},
            id="total-forms-past-the-maximum",
        ),
    ]


@pytest.mark.parametrize("data", odd_posts())
def test_it_answers_odd_input_without_a_server_error_and_stores_nothing(submit, data):
    response = submit(data)

    assert response.status_code in (200, 400)
    assert_nothing_stored()


def test_it_rejects_a_file_sent_in_place_of_a_name(submit):
    data: dict[str, Any] = valid_form_data()
    data["first_name"] = SimpleUploadedFile("name.txt", b"Maria")

    response = submit(data)

    assert response.status_code == 200
    assert "first_name" in response.context["form"].errors
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"first_name": "Maria"}', "application/json"),
        ("first_name=%FF%FE%00&email=%C0%AF", "application/x-www-form-urlencoded"),
        ("<xml/>", "text/xml"),
        ("--broken\r\nContent-Disposition: form-data", "multipart/form-data; boundary=broken"),
        ("--", "multipart/form-data"),
    ],
)
def test_it_answers_a_body_that_is_not_a_form_without_a_server_error(client, body, content_type):
    response = client.post("/reset/", data=body, content_type=content_type)

    assert response.status_code in (200, 400)
    assert_nothing_stored()


def test_it_refuses_other_methods(client):
    response = client.put("/reset/")

    assert response.status_code == 405
    assert_nothing_stored()
