"""GET /healthz: 200 with {"database": "ok", "broker": "ok"} when both answer,
503 naming what is down otherwise."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError as DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from kombu.exceptions import OperationalError as BrokerError

pytestmark = pytest.mark.django_db


def broker_down():
    return mock.patch(
        "kombu.Connection.ensure_connection",
        side_effect=BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    )


def database_down():
    return mock.patch.object(BaseDatabaseWrapper, "cursor", side_effect=DatabaseError("could not connect to server"))


def test_it_reports_ok_on_the_defaults(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_it_names_the_broker_when_the_broker_is_down(client):
    with broker_down():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "down"}


def test_it_names_the_broker_when_connecting_to_it_fails_outright(client):
    with mock.patch("portal_reset.celery.app.connection_for_write", side_effect=ConnectionRefusedError(111, "refused")):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "down"}


def test_it_names_the_database_when_the_database_is_down(client):
    with database_down():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "down", "broker": "ok"}


def test_it_names_both_when_both_are_down(client):
    with database_down(), broker_down():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "down", "broker": "down"}


def test_it_is_never_cached(client):
    response = client.get("/healthz")

    assert "no-cache" in response["Cache-Control"]


def test_it_answers_only_get(client):
    assert client.post("/healthz").status_code == 405
