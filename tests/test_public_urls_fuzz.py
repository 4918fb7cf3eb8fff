"""Property-based: whatever a browser or a bot sends to the public URLs, the
answer is never a 500 and nothing oversized is stored."""

from datetime import date, timedelta
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from requests_app.models import FamilyMember, ResetRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    # Hypothesis runs many examples in one test; a 429 would hide the rest.
    settings.SUBMIT_RATE_PER_ADDRESS = settings.SUBMIT_RATE_PER_EMAIL = "1000000/h"


FIELDS = ["first_name", "last_name", "date_of_birth", "email", "phone", "appointment_date", "reason", "details"]
LIMITS = {"first_name": 100, "last_name": 100, "email": 254, "phone": 32, "details": 1000}
ALLOWED = {200, 303, 400}

any_text = st.one_of(
    st.text(max_size=40),
    st.text(min_size=900, max_size=3000),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "null",
            "0",
            "-1",
            "1e309",
            "NaN",
            "<script>",
            "' OR 1=1 --",
            "\u202e",
            "\U0001d518\U0001d52b\U0001d526",
        ]
    ),
)
date_like = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
    st.sampled_from(["2026-02-30", "1980-13-01", "01/02/1980", "0000-00-00", "19800423", "1980-04-23T00:00"]),
    any_text,
)
field_value = {
    "date_of_birth": date_like,
    "appointment_date": date_like,
    "reason": st.one_of(
        st.sampled_from(["link_expired", "never_received", "security_code", "shared_account", "other"]), any_text
    ),
    "email": st.one_of(st.emails().map(str), any_text),
}


@st.composite
def reset_posts(draw):
    data = {}
    for name in FIELDS:
        if draw(st.booleans()) or name in ("reason",):
            data[name] = draw(field_value.get(name, any_text))
    if draw(st.booleans()):
        data["family-TOTAL_FORMS"] = draw(st.one_of(st.sampled_from(["0", "1", "5", "6", "1000", "-1", "x"]), any_text))
        data["family-INITIAL_FORMS"] = draw(st.sampled_from(["0", "1", "", "x"]))
        for i in range(draw(st.integers(0, 3))):
            for name in ("first_name", "last_name", "date_of_birth"):
                data[f"family-{i}-{name}"] = draw(date_like if name == "date_of_birth" else any_text)
    return data


def recent_valid_base() -> dict[str, str]:
    return {
        "first_name": "Ana",
        "last_name": "Diaz",
        "date_of_birth": "1980-04-23",
        "email": "ana.diaz@example.com",
        "phone": "555-201-3344",
        "appointment_date": (date.today() - timedelta(days=5)).isoformat(),
        "reason": "other",
    }


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=reset_posts())
def test_it_never_answers_500_to_a_reset_post(client, data):
    response = client.post("/reset/", data)
    assert response.status_code in ALLOWED


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(st.sampled_from(FIELDS), any_text, max_size=3))
def test_it_never_stores_an_oversized_value(client, overrides):
    response = client.post("/reset/", {**recent_valid_base(), **overrides})
    assert response.status_code in ALLOWED
    for request in ResetRequest.objects.all():
        for field, limit in LIMITS.items():
            assert len(getattr(request, field)) <= limit
        assert "\x00" not in request.first_name + request.last_name + request.details
    for member in FamilyMember.objects.all():
        assert len(member.first_name) <= 100 and len(member.last_name) <= 100


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.one_of(
        st.text(min_size=1, max_size=300), st.from_regex(r"[A-Z2-9]{8}[A-Za-z0-9_-]{20,40}", fullmatch=True)
    )
)
def test_it_never_answers_500_to_a_status_token(client, token):
    response = client.get(f"/status/{quote(token, safe='')}/")
    assert response.status_code in {404, 301}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reference=st.text(min_size=1, max_size=100))
def test_it_never_answers_500_to_a_confirmation_reference(client, reference):
    response = client.get(f"/reset/submitted/{quote(reference, safe='')}/")
    assert response.status_code in {200, 404, 301}
