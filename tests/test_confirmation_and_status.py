"""What the patient sees after filing: the confirmation page (reference, no
personal data) and the status page reached by the secret link (coarse step,
no personal data; any wrong link is a 404, never a 500)."""

from __future__ import annotations

from typing import Any

import pytest

from requests_app.models import ResetRequest

from .conftest import UNMISTAKABLE_PATIENT, valid_form_data
from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db

PATIENT = UNMISTAKABLE_PATIENT
# Every way the pages could show them.
PERSONAL = [
    "Zebulon",
    "Quattlebaum",
    "1975",
    "zq.private",
    "+15559871234",
    "555-987-1234",
    "9871234",
    "firmware",
]


def assert_no_personal_data(html: str) -> None:
    for value in PERSONAL:
        assert value not in html


@pytest.fixture
def filed(submit: Any) -> tuple[ResetRequest, Any]:
    response = submit(valid_form_data(**PATIENT))
    assert response.status_code == 303
    return ResetRequest.objects.get(), response


# --- Confirmation ----------------------------------------------------------------


def test_it_shows_the_reference_on_the_confirmation_page(client, filed):
    request, response = filed

    page = client.get(response["Location"])

    assert page.status_code == 200
    assert request.reference in page.content.decode()


def test_it_shows_no_personal_data_on_the_confirmation_page(client, filed):
    _, response = filed

    page = client.get(response["Location"])

    assert page.status_code == 200
    assert_no_personal_data(page.content.decode())


@pytest.mark.parametrize(
    "reference",
    [
        "nope",
        "ABCDEFGH",
        "ABCD-EFGHJ",
        "ABC-DEFGH",
        "A-B",
        "-",
        "ABCD-EFG1",  # 1 is not in the alphabet
        "ABCD-EFGO",  # nor is O
        "abcd-efgh",
        "ABCD EFGH",
        "<script>-x",
        "ABCD-EFG%00",
        "ABCD-%C3%A9FGH",
        "A" * 300 + "-B",
    ],
)
def test_it_answers_404_for_a_malformed_reference(client, reference):
    response = client.get(f"/reset/submitted/{reference}/")

    assert response.status_code == 404


# --- Status page -------------------------------------------------------------------


def test_it_reaches_the_status_page_from_the_link_in_the_acknowledgment(client, filed):
    request, _ = filed

    response = client.get(request.get_status_url())

    assert response.status_code == 200
    assert response.context["step"] == "received"
    assert request.reference in response.content.decode()


@pytest.mark.parametrize(
    ("traits", "step"),
    [
        ({}, "received"),
        ({"in_progress": True}, "verifying"),
        ({"waiting": True}, "verifying"),
        ({"resolved": True}, "reset"),
        ({"closed": True}, "closed"),
    ],
)
def test_it_shows_the_coarse_step_of_each_status(client, traits, step):
    request = ResetRequestFactory(**traits)

    response = client.get(request.get_status_url())

    assert response.status_code == 200
    assert response.context["step"] == step


@pytest.mark.parametrize("traits", [{}, {"in_progress": True}, {"waiting": True}, {"resolved": True}, {"closed": True}])
def test_it_shows_no_personal_data_on_the_status_page(client, traits):
    request = ResetRequestFactory(
        first_name="Zebulon",
        last_name="Quattlebaum",
        date_of_birth="1975-11-02",
        email="zq.private@example.com",
        phone="+15559871234",
        details="Locked out since the firmware upgrade",
        **traits,
    )

    response = client.get(request.get_status_url())

    assert response.status_code == 200
    assert_no_personal_data(response.content.decode())


def test_it_keeps_the_status_link_out_of_caches_and_referers(client, reset_request):
    response = client.get(reset_request.get_status_url())

    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]


def bad_tokens(request: ResetRequest, other: ResetRequest) -> list[str]:
    token = request.status_token
    compact = request.reference.replace("-", "")
    return [
        "x",
        "0" * 40,
        compact,  # the reference alone: an empty secret
        compact + "A" * len(request.status_secret),  # a guessed secret
        token[:-1],  # truncated by one character
        token[:-10],  # truncated, still long
        token + "A",  # one character too many
        token[:8] + other.status_secret,  # this reference, another request's secret
        other.reference.replace("-", "") + request.status_secret,  # the other way round
        token[:-1] + ("B" if token[-1] != "B" else "C"),  # last character changed
        request.reference + request.status_secret,  # the reference with its dash
        token.swapcase(),
        compact[:3] + "-" + "\x00" + compact[4:] + request.status_secret,
        compact + request.status_secret + "\x00",
        "é" * 40,
        compact + "é" * 32,
        "A" * 5000,
    ]


def test_it_answers_404_for_every_wrong_status_token(client):
    request, other = ResetRequestFactory(), ResetRequestFactory()

    for token in bad_tokens(request, other):
        response = client.get(f"/status/{token}/")
        assert response.status_code == 404, token

    # The right token still works: the 404s were not for some other reason.
    assert client.get(f"/status/{request.status_token}/").status_code == 200


def test_it_answers_404_for_the_link_of_a_request_whose_data_was_purged(client):
    request = ResetRequestFactory(closed=True)
    old_url = request.get_status_url()
    assert client.get(old_url).status_code == 200

    ResetRequest.objects.filter(pk=request.pk).update(status_secret="")

    assert client.get(old_url).status_code == 404
    assert client.get(f"/status/{request.reference.replace('-', '')}/").status_code == 404


def test_it_answers_404_for_the_status_of_a_request_that_does_not_exist(client):
    request = ResetRequestFactory.build()

    response = client.get(request.get_status_url())

    assert response.status_code == 404


def test_it_gives_each_request_its_own_unguessable_token(db):
    tokens = {ResetRequestFactory().status_secret for _ in range(20)}

    assert len(tokens) == 20
    # At least 128 bits: 22 or more characters of URL-safe base64.
    assert all(len(secret) >= 22 for secret in tokens)


@pytest.mark.parametrize("prefix", ["/", "/portal T0K3N/", "/Tenant/"])
@pytest.mark.parametrize("token", ["K7QM3XTDab_c-9", "K7QM3XTD", "K7QM3XTD!é", "ab%2F"])
def test_a_status_link_is_the_path_django_reverses(prefix, token):
    # ResetRequest.get_status_url writes the path around the token once per
    # script prefix; a token with other characters goes through reverse.
    from django.urls import reverse, set_script_prefix

    from requests_app.models.reset_request import status_path

    set_script_prefix(prefix)
    try:
        assert status_path(token) == reverse("requests_app:status", kwargs={"token": token})
    finally:
        set_script_prefix("/")
