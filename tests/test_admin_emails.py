"""Staff see every email's state, and send a failed one again as a new
outbox row — the failed row stays as it was."""

import pytest
from django.core import mail

from requests_app.models import OutboundEmail, RequestEvent

from .factories import OutboundEmailFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/requests_app/outboundemail/"


def test_it_lists_failed_emails_with_their_error_for_staff(staff_client):
    OutboundEmailFactory(state="failed", attempts=1, last_error="550 5.1.1 no such mailbox")
    OutboundEmailFactory(state="sent")
    response = staff_client.get(LIST, {"state__exact": "failed"})
    assert response.status_code == 200
    assert "550 5.1.1 no such mailbox" in response.content.decode()
    assert len(response.context["cl"].result_list) == 1


def test_it_sends_a_failed_email_again_as_a_new_row(staff_client, staff, django_capture_on_commit_callbacks):
    failed = OutboundEmailFactory(state="failed", attempts=6, last_error="451 try later")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(LIST, {"action": "send_again", "_selected_action": [failed.pk]})
    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 6, "451 try later")
    again = OutboundEmail.objects.exclude(pk=failed.pk).get()
    assert (again.kind, again.to, again.reset_id, again.state) == (failed.kind, failed.to, failed.reset_id, "sent")
    assert [m.to for m in mail.outbox] == [[failed.to]]
    assert failed.reset.events.filter(kind=RequestEvent.Kind.EMAIL_QUEUED, actor=staff).exists()


def test_it_refuses_to_send_again_an_email_still_on_its_way(staff_client):
    pending = OutboundEmailFactory(state="pending")
    response = staff_client.post(LIST, {"action": "send_again", "_selected_action": [pending.pk]}, follow=True)
    assert "still being sent" in response.content.decode()
    assert OutboundEmail.objects.count() == 1


def test_it_lets_no_one_edit_or_delete_an_email(superuser, client):
    client.force_login(superuser)
    email = OutboundEmailFactory(state="failed")
    assert client.post(f"{LIST}{email.pk}/change/", {"to": "x@example.com"}).status_code == 403
    assert client.post(f"{LIST}{email.pk}/delete/", {"post": "yes"}).status_code == 403
    email.refresh_from_db()
    assert email.to != "x@example.com"
