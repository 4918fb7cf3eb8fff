import pytest
from django.core import mail

from requests_app.models import OutboundEmail, ResetRequest


@pytest.mark.django_db
def test_it_files_a_request_and_sends_the_acknowledgment(client, form_data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/reset/", form_data())
    request = ResetRequest.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/reset/submitted/{request.reference}/"
    assert OutboundEmail.objects.filter(state="sent").count() == 2
    assert [m.to for m in mail.outbox] == [["maria.lopez@example.com"], ["staff@practice.example"]]
