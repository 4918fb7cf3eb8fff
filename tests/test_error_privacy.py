"""A server error while a patient submits leaves none of their details in
the logs or in Django's error report (what ADMINS would be emailed)."""

import logging
import sys

import pytest
from django.core.signals import got_request_exception
from django.test import Client
from django.views.debug import ExceptionReporter

from requests_app.services import submission

pytestmark = pytest.mark.django_db

PATIENT = {
    "first_name": "Guadalupe",
    "last_name": "Villanueva",
    "date_of_birth": "1971-08-19",
    "email": "lupe.villanueva@example.com",
    "phone": "555-867-5309",
    "details": "my daughter Xiomara shares this email",
}
PERSONAL = ["Guadalupe", "Villanueva", "1971-08-19", "lupe.villanueva", "867-5309", "8675309", "Xiomara"]


class Boom(RuntimeError):
    pass


@pytest.fixture
def server_error(monkeypatch):
    """Make storing the request fail deep inside the service, where every
    frame on the way holds the patient's details in its local variables;
    capture what Django's error reporting would see."""

    def explode():
        raise Boom("could not store the request")

    monkeypatch.setattr(submission, "new_reference", explode)
    captured = {}

    def on_exception(sender, request, **kwargs):
        captured["request"] = request
        captured["exc_info"] = sys.exc_info()

    got_request_exception.connect(on_exception)
    yield captured
    got_request_exception.disconnect(on_exception)


def test_it_keeps_the_patients_details_out_of_the_logs(form_data, server_error, caplog):
    with caplog.at_level(logging.DEBUG):
        response = Client(raise_request_exception=False).post("/reset/", form_data(**PATIENT))
    assert response.status_code == 500
    formatter = logging.Formatter("%(name)s %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "Internal Server Error" in logged
    assert "could not store the request" in logged
    for value in PERSONAL:
        assert value not in logged


def test_it_keeps_the_patients_details_out_of_the_error_report(form_data, server_error):
    Client(raise_request_exception=False).post("/reset/", form_data(**PATIENT))
    reporter = ExceptionReporter(server_error["request"], *server_error["exc_info"])
    report = reporter.get_traceback_text() + reporter.get_traceback_html()
    assert "could not store the request" in report
    assert "first_name" in report  # the POST is listed, its values masked
    for value in PERSONAL:
        assert value not in report
