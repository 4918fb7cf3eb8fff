"""HEAD is answered like GET on every patient page: the same status and
headers, no body (link checkers, monitors and some browsers send it)."""

import pytest

from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/reset/", "/reset/submitted/K7QM-3XTD/", "/healthz"])
def test_it_answers_head_like_get(client, path):
    get = client.get(path)
    head = client.head(path)

    assert head.status_code == get.status_code
    assert head["Content-Type"] == get["Content-Type"]
    assert head.content == b""


def test_it_answers_head_on_a_status_page_like_get(client):
    reset = ResetRequestFactory()

    head = client.head(reset.get_status_url())

    assert head.status_code == 200
    assert head["Referrer-Policy"] == "no-referrer"
    assert head.content == b""


def test_it_answers_head_on_a_wrong_status_link_with_404(client):
    assert client.head("/status/K7QM3XTDnot-the-secret-at-all-no/").status_code == 404
