"""Delivery feedback: each provider's real bounce and complaint reports
(the payload shapes of django-anymail's own test fixtures, from the
providers' documentation and live captures), posted through the real URL,
middleware (CSRF enforced) and anymail's authentication, back on the outbox
row, the timeline and the queue; and sending through a provider stores its
message id, with open and click tracking off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client
from django.utils import timezone

from requests_app.models import OutboundEmail, RequestEvent, ResetRequest
from requests_app.models.outbox import DeliveryReport
from requests_app.outbox.send import email_send_many

from .factories import OutboundEmailFactory, ResetRequestFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
LIST = "/admin/requests_app/resetrequest/"
SECRET = "anymail-user:9sT3kRw8VxQmLp2Zc7"
MAILGUN_SIGNING_KEY = "mailgun-webhook-signing-key-for-tests"
PATIENT = "maria.lopez@example.com"


def basic(credentials: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


# --- Each provider's report, as it posts it ---------------------------------------


@dataclass(frozen=True)
class Provider:
    key: str
    # The id the provider gave the message when it was sent (stored on the row).
    message_id: str
    # (kind, report id) -> (body, content type, headers): kind is "bounce",
    # "complaint" or "deferral"; the report id tells one report from another.
    build: Callable[[str, str, str], tuple[str, str, dict[str, str]]]
    # Headers that authenticate a call (basic auth or a signature).
    authenticated: Callable[[str], dict[str, str]]
    # Headers of a call whose authentication is wrong.
    forged: Callable[[str], dict[str, str]]


def postmark(kind: str, report_id: str, message_id: str) -> tuple[str, str, dict[str, str]]:
    record = {
        "bounce": {
            "RecordType": "Bounce",
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        },
        "complaint": {
            "RecordType": "SpamComplaint",
            "Type": "SpamComplaint",
            "TypeCode": 512,
            "Name": "Spam complaint",
            "Description": "",
            "Details": "Test spam complaint details",
        },
        "deferral": {
            "RecordType": "Bounce",
            "Type": "Transient",
            "TypeCode": 2,
            "Name": "Message delayed",
            "Description": "The server could not temporarily deliver your message (ex: Message is delayed due to "
            "network troubles).",
            "Details": "smtp;421 4.4.2 Connection timed out",
        },
    }[kind]
    body = {
        **record,
        "ID": int(report_id),
        "ServerID": 23,
        "MessageID": message_id,
        "Email": PATIENT,
        "From": "resets@practice.example",
        "BouncedAt": "2026-11-27T16:28:50.3963933-04:00",
        "DumpAvailable": True,
        "Inactive": kind != "deferral",
        "CanActivate": True,
        "Subject": "Your request K7QM-3XTD",
    }
    return json.dumps(body), "application/json", {}


def amazon_ses(kind: str, report_id: str, message_id: str) -> tuple[str, str, dict[str, str]]:
    mail = {
        "timestamp": "2026-11-27T14:59:38.237Z",
        "source": "resets@practice.example",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/practice.example",
        "messageId": message_id,
        "destination": [PATIENT],
        "headersTruncated": False,
    }
    if kind == "bounce":
        ses_event: dict[str, Any] = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "reportingMTA": "dns; email.example.com",
                "bouncedRecipients": [
                    {
                        "emailAddress": PATIENT,
                        "status": "5.1.1",
                        "action": "failed",
                        "diagnosticCode": f"smtp; 550 5.1.1 <{PATIENT}>... User unknown",
                    }
                ],
                "timestamp": "2026-11-27T14:59:44.101Z",
                "feedbackId": "00000138111222aa-44455566-cccc-cccc-cccc-ddddaaaa068a-000000",
            },
            "mail": mail,
        }
    elif kind == "complaint":
        ses_event = {
            "notificationType": "Complaint",
            "complaint": {
                "userAgent": "AnyCompany Feedback Loop (V0.01)",
                "complainedRecipients": [{"emailAddress": PATIENT}],
                "complaintFeedbackType": "abuse",
            },
            "mail": mail,
        }
    else:
        raise ValueError("SES reports no deferral to its tracking webhook")
    sns = {
        "Type": "Notification",
        "MessageId": f"19ba9823-d7f2-53c1-860e-{int(report_id):012d}",
        "TopicArn": "arn:aws:sns:us-east-1:1234567890:SES_Events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event) + "\n",
        "Timestamp": "2026-11-27T17:58:59.675Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE-SIGNATURE==",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-12345abcde.pem",
    }
    headers = {"HTTP_X_AMZ_SNS_MESSAGE_ID": sns["MessageId"], "HTTP_X_AMZ_SNS_MESSAGE_TYPE": sns["Type"]}
    # SNS posts its JSON as text/plain.
    return json.dumps(sns), "text/plain; charset=UTF-8", headers


def mailgun_signed(event_data: dict[str, Any], token: str, key: str = MAILGUN_SIGNING_KEY) -> dict[str, Any]:
    timestamp = str(int(event_data["timestamp"]))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"token": token, "timestamp": timestamp, "signature": signature}, "event-data": event_data}


def mailgun(kind: str, report_id: str, message_id: str) -> tuple[str, str, dict[str, str]]:
    headers = {"to": PATIENT, "message-id": message_id.strip("<>"), "from": "IFM <resets@practice.example>"}
    event_data: dict[str, Any] = {
        "bounce": {
            "event": "failed",
            "severity": "permanent",
            "reason": "bounce",
            "log-level": "error",
            "delivery-status": {
                "mx-host": "aspmx.l.example.org",
                "attempt-no": 1,
                "description": "",
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist. Please try\n"
                "5.1.1 double-checking the recipient's email address for typos",
            },
        },
        "complaint": {"event": "complained", "log-level": "warn"},
        "deferral": {
            "event": "failed",
            "severity": "temporary",
            "reason": "generic",
            "log-level": "warn",
            "delivery-status": {
                "attempt-no": 3,
                "description": "No MX for nomx.example.com",
                "retry-seconds": 1800,
                "code": 498,
                "message": "No MX for nomx.example.com",
            },
        },
    }[kind]
    event_data = {
        "id": f"ncV2XwymRUKbPek{report_id}",
        **event_data,
        "recipient": PATIENT,
        "timestamp": 1795810022.389832,
        "message": {"headers": headers},
    }
    token = secrets.token_hex(25)  # a new signature each time it is sent
    return json.dumps(mailgun_signed(event_data, token)), "application/json", {}


def sendgrid(kind: str, report_id: str, message_id: str) -> tuple[str, str, dict[str, str]]:
    event = {
        "bounce": {
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "ip": "167.89.17.173",
            "tls": 1,
        },
        "complaint": {"event": "spamreport"},
        "deferral": {
            "event": "deferred",
            "response": "Email was deferred due to the following reason(s): [IPs were throttled by recipient server]",
            "attempt": "1",
        },
    }[kind]
    body = [
        {
            **event,
            "email": PATIENT,
            "timestamp": 1795810022,
            "anymail_id": message_id,
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "sg_event_id": f"lC0Rc-FuQmKbnxCW{report_id}",
            "sg_message_id": "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0",
        }
    ]
    return json.dumps(body), "application/json", {}


def brevo(kind: str, report_id: str, message_id: str) -> tuple[str, str, dict[str, str]]:
    event = {
        "bounce": {
            "event": "hard_bounce",
            # The leading space is as Brevo sends it.
            "reason": " RecipientError: 550 5.5.0 Requested action not taken: mailbox unavailable.",
        },
        "complaint": {"event": "spam"},
        "deferral": {"event": "deferred", "reason": "421 4.7.0 Try again later"},
    }[kind]
    body = {
        **event,
        "email": PATIENT,
        "id": 9999999,  # Brevo's account id, not an id of the report
        "date": "2026-11-27 11:10:23",
        # Brevo gives no id of a report: its time tells one from another.
        "ts_epoch": 1795810022000 + int(report_id),
        "message-id": message_id,
        "tag": "acknowledgment",
        "sending_ip": "185.41.28.109",
    }
    return json.dumps(body), "application/json", {}


PROVIDERS = {
    "postmark": Provider(
        "postmark", "2706ee8a-737c-4285-b032-ccd317af53ed", postmark, lambda body: basic(), lambda body: basic("x:y")
    ),
    "amazon_ses": Provider(
        "amazon_ses",
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        amazon_ses,
        lambda body: basic(),
        lambda body: basic(SECRET + "x"),
    ),
    "mailgun": Provider(
        "mailgun",
        "<20261127214658.1.0DF563D0B3597700@mg.practice.example>",
        mailgun,
        lambda body: {},
        # Signed with another key than the practice's.
        lambda body: {},
    ),
    "sendgrid": Provider(
        "sendgrid", "de212213-bb66-4302-8f3f-20acdb7a104e", sendgrid, lambda body: basic(), lambda body: {}
    ),
    "brevo": Provider(
        "brevo",
        "<202611271158.9876543210@smtp-relay.mailin.fr>",
        brevo,
        lambda body: basic(),
        lambda body: basic("anymail-user:wrong"),
    ),
}
ALL = list(PROVIDERS)
WITH_DEFERRALS = ["postmark", "mailgun", "sendgrid", "brevo"]


@pytest.fixture
def configure(settings: Any) -> Callable[[str], Provider]:
    def _configure(key: str) -> Provider:
        settings.EMAIL_PROVIDER = key
        settings.ANYMAIL = {
            "postmark": {"POSTMARK_SERVER_TOKEN": "server-token", "WEBHOOK_SECRET": SECRET},
            "amazon_ses": {"WEBHOOK_SECRET": SECRET, "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False},
            "mailgun": {"MAILGUN_API_KEY": "key-x", "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY},
            "sendgrid": {"SENDGRID_API_KEY": "SG.x", "WEBHOOK_SECRET": SECRET},
            "brevo": {"BREVO_API_KEY": "xkeysib-x", "WEBHOOK_SECRET": SECRET},
        }[key]
        return PROVIDERS[key]

    return _configure


@pytest.fixture
def webhook() -> Client:
    """A caller of our own: the provider, through every middleware, CSRF checked."""
    return Client(enforce_csrf_checks=True)


def post(client: Client, provider: Provider, body: str, content_type: str, headers: dict[str, str]) -> Any:
    return client.post(f"/email/anymail/{provider.key}/tracking/", data=body, content_type=content_type, **headers)


def report(client: Client, provider: Provider, kind: str, report_id: str = "901542550") -> Any:
    body, content_type, headers = provider.build(kind, report_id, provider.message_id)
    return post(client, provider, body, content_type, {**headers, **provider.authenticated(body)})


def sent_acknowledgment(provider: Provider, **request: Any) -> OutboundEmail:
    """An acknowledgment the provider accepted: sent, with its id."""
    reset = ResetRequestFactory(email=PATIENT, **request)
    return OutboundEmailFactory(
        reset=reset,
        state=OutboundEmail.State.SENT,
        sent_at=timezone.now(),
        attempts=1,
        provider_message_id=provider.message_id,
    )


def snapshot(email: OutboundEmail) -> tuple[Any, ...]:
    email.refresh_from_db()
    reset = ResetRequest.objects.get(pk=email.reset_id)
    return (
        email.state,
        email.last_error,
        reset.status,
        reset.email_undeliverable,
        RequestEvent.objects.filter(reset=reset).count(),
        DeliveryReport.objects.count(),
    )


def queue_rows(staff_client: Any, query: str = "") -> list[str]:
    """The references on the list's first page, in its order."""
    page = staff_client.get(LIST + query).content.decode()
    start = page.find('id="result_list"')
    if start < 0:
        return []  # no request on the page
    return [
        chunk.split("</a>")[0].rsplit(">", 1)[1]
        for chunk in page[start:].split('class="field-reference"')[1:]
        if "</a>" in chunk
    ]


# --- Bounces and complaints ------------------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_it_marks_a_bounced_patient_email_and_puts_its_request_first(
    key: str, configure: Any, webhook: Client, staff_client: Any, time_machine: Any
) -> None:
    provider = configure(key)
    older = ResetRequestFactory(submitted_at=timezone.now() - timedelta(hours=5))
    email = sent_acknowledgment(provider)

    response = report(webhook, provider, "bounce")

    assert response.status_code == 200
    email.refresh_from_db()
    assert email.state == OutboundEmail.State.BOUNCED
    assert email.last_error.startswith(f"{provider_name(key)}: ")
    assert PATIENT not in email.last_error  # the row's own "to" says where it went
    reset = ResetRequest.objects.get(pk=email.reset_id)
    assert reset.email_undeliverable and reset.email_undeliverable_at is not None
    assert reset.status == ResetRequest.Status.NEW
    [event] = RequestEvent.objects.filter(reset=reset)
    assert event.kind == RequestEvent.Kind.EMAIL_BOUNCED
    assert event.message.startswith("Acknowledgment ")
    assert "The email address does not work: call the patient." in event.message
    assert queue_rows(staff_client) == [reset.reference, older.reference]
    page = staff_client.get(LIST).content.decode()
    assert "Email does not work — call the patient" in page


def provider_name(key: str) -> str:
    return {
        "postmark": "Postmark",
        "amazon_ses": "Amazon SES",
        "mailgun": "Mailgun",
        "sendgrid": "SendGrid",
        "brevo": "Brevo",
    }[key]


@pytest.mark.parametrize("key", ALL)
def test_it_marks_a_spam_complaint(key: str, configure: Any, webhook: Client) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)

    response = report(webhook, provider, "complaint")

    assert response.status_code == 200
    email.refresh_from_db()
    assert email.state == OutboundEmail.State.COMPLAINED
    reset = ResetRequest.objects.get(pk=email.reset_id)
    assert reset.email_undeliverable
    [event] = RequestEvent.objects.filter(reset=reset)
    assert event.message.startswith(f"Acknowledgment marked as spam ({provider_name(key)}")


def test_it_keeps_the_providers_reason_without_addresses(configure: Any, webhook: Client) -> None:
    provider = configure("amazon_ses")
    email = sent_acknowledgment(provider)

    report(webhook, provider, "bounce")

    email.refresh_from_db()
    assert email.last_error == "Amazon SES: Permanent: General; smtp; 550 5.1.1 <[address]>... User unknown"
    event = RequestEvent.objects.get(reset=email.reset)
    assert PATIENT not in event.message and "User unknown" in event.message


@pytest.mark.parametrize("key", ALL)
def test_the_same_report_again_answers_200_and_changes_nothing_more(key: str, configure: Any, webhook: Client) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)
    report(webhook, provider, "bounce")
    before = snapshot(email)

    response = report(webhook, provider, "bounce")

    assert response.status_code == 200
    assert snapshot(email) == before


@pytest.mark.parametrize("key", ALL)
def test_a_second_report_on_a_bounced_email_changes_nothing_more(key: str, configure: Any, webhook: Client) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)
    report(webhook, provider, "bounce", report_id="1")
    state, reason, status, marked, events, _ = snapshot(email)

    response = report(webhook, provider, "complaint", report_id="2")

    assert response.status_code == 200
    assert snapshot(email)[:5] == (state, reason, status, marked, events)


@pytest.mark.parametrize("key", WITH_DEFERRALS)
def test_a_deferral_only_goes_on_the_timeline(key: str, configure: Any, webhook: Client) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)

    response = report(webhook, provider, "deferral")

    assert response.status_code == 200
    email.refresh_from_db()
    assert email.state == OutboundEmail.State.SENT
    reset = ResetRequest.objects.get(pk=email.reset_id)
    assert not reset.email_undeliverable
    [event] = RequestEvent.objects.filter(reset=reset)
    assert event.message.startswith(f"Acknowledgment: delivery delayed, {provider_name(key)} tries again")


def test_a_deferral_sent_again_goes_on_the_timeline_once(configure: Any, webhook: Client) -> None:
    provider = configure("brevo")  # Brevo gives no id of a report
    email = sent_acknowledgment(provider)
    report(webhook, provider, "deferral", report_id="7")

    report(webhook, provider, "deferral", report_id="7")
    report(webhook, provider, "deferral", report_id="8")

    assert RequestEvent.objects.filter(reset=email.reset).count() == 2


def test_a_bounce_on_an_ended_request_marks_it_without_reopening_it(
    configure: Any, webhook: Client, staff_client: Any
) -> None:
    provider = configure("postmark")
    open_one = ResetRequestFactory()
    email = sent_acknowledgment(provider, resolved=True)

    report(webhook, provider, "bounce")

    reset = ResetRequest.objects.get(pk=email.reset_id)
    assert reset.status == ResetRequest.Status.RESOLVED and not reset.is_open
    assert reset.email_undeliverable
    assert queue_rows(staff_client) == [open_one.reference, reset.reference]
    assert queue_rows(staff_client, "?email_address=does_not_work") == [reset.reference]
    assert queue_rows(staff_client, "?email_address=does_not_work&state=open") == []


def test_a_bounce_for_an_address_no_longer_on_file_marks_nothing(configure: Any, webhook: Client) -> None:
    provider = configure("postmark")
    email = sent_acknowledgment(provider)
    ResetRequest.objects.filter(pk=email.reset_id).update(email="maria.new@example.com")

    report(webhook, provider, "bounce")

    email.refresh_from_db()
    assert email.state == OutboundEmail.State.BOUNCED
    assert not ResetRequest.objects.get(pk=email.reset_id).email_undeliverable
    assert "The address on file has been changed since." in RequestEvent.objects.get(reset=email.reset).message


def test_a_bounced_staff_notice_puts_no_mark_on_the_request(configure: Any, webhook: Client) -> None:
    provider = configure("postmark")
    email = sent_acknowledgment(provider)
    email.kind = OutboundEmail.Kind.STAFF_NEW_REQUEST
    email.save()

    report(webhook, provider, "bounce")

    email.refresh_from_db()
    assert email.state == OutboundEmail.State.BOUNCED
    assert not ResetRequest.objects.get(pk=email.reset_id).email_undeliverable


def test_a_report_for_a_message_not_in_the_outbox_is_logged_and_ignored(
    configure: Any, webhook: Client, caplog: Any
) -> None:
    provider = configure("postmark")
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body, content_type, headers = postmark("bounce", "5", "0e8d1c2b-0000-4000-8000-000000000000")

    with caplog.at_level(logging.INFO, logger="requests_app"):
        response = post(webhook, provider, body, content_type, {**headers, **basic()})

    assert response.status_code == 200
    assert snapshot(email) == before
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "names no message of the outbox" in logged
    assert PATIENT not in logged and "0e8d1c2b" not in logged


def test_opens_clicks_and_deliveries_are_not_kept(configure: Any, webhook: Client) -> None:
    provider = configure("postmark")
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    for record_type in ("Delivery", "Open", "Click"):
        body = {"RecordType": record_type, "MessageID": provider.message_id, "Recipient": PATIENT}

        response = post(webhook, provider, json.dumps(body), "application/json", basic())

        assert response.status_code == 200
    assert snapshot(email) == before


# --- Authentication and malformed calls ------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_a_call_with_wrong_authentication_is_refused_and_changes_nothing(
    key: str, configure: Any, webhook: Client
) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body, content_type, headers = provider.build("bounce", "11", provider.message_id)
    if key == "mailgun":
        signed = json.loads(body)
        body = json.dumps(mailgun_signed(signed["event-data"], signed["signature"]["token"], key="not-the-key"))

    response = post(webhook, provider, body, content_type, {**headers, **provider.forged(body)})

    assert response.status_code in (400, 403)
    assert snapshot(email) == before


@pytest.mark.parametrize("key", ["postmark", "sendgrid", "brevo"])
def test_a_call_without_authentication_is_refused_and_changes_nothing(
    key: str, configure: Any, webhook: Client
) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body, content_type, headers = provider.build("bounce", "12", provider.message_id)

    response = post(webhook, provider, body, content_type, headers)

    assert response.status_code == 400
    assert snapshot(email) == before


def test_amazon_sns_without_credentials_is_asked_for_them_and_nothing_changes(configure: Any, webhook: Client) -> None:
    """SNS sends basic auth only after a 401 that asks for it."""
    provider = configure("amazon_ses")
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body, content_type, headers = amazon_ses("bounce", "13", provider.message_id)

    response = post(webhook, provider, body, content_type, headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert snapshot(email) == before


def test_a_mailgun_report_without_its_signature_is_refused(configure: Any, webhook: Client) -> None:
    provider = configure("mailgun")
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body = json.loads(mailgun("bounce", "14", provider.message_id)[0])
    del body["signature"]

    response = post(webhook, provider, json.dumps(body), "application/json", {})

    assert response.status_code == 400
    assert snapshot(email) == before


@pytest.mark.parametrize("key", ALL)
@pytest.mark.parametrize(
    "body", ["{not json", "[]", '{"unexpected": true}', "null", '"a string"', "\xff\xfe"], ids=repr
)
def test_a_malformed_call_answers_400_and_changes_nothing(key: str, body: str, configure: Any, webhook: Client) -> None:
    provider = configure(key)
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    headers = provider.authenticated(body)
    if key == "amazon_ses":
        headers.update(HTTP_X_AMZ_SNS_MESSAGE_ID="1", HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification")

    response = post(webhook, provider, body, "application/json", headers)

    # Well-formed, and no report to keep: a batch of none (SendGrid's []), a
    # record of no type we keep (Postmark's and Brevo's JSON objects).
    readable = {("sendgrid", "[]"), ("postmark", '{"unexpected": true}'), ("brevo", '{"unexpected": true}')}
    assert response.status_code == (200 if (key, body) in readable else 400)
    assert snapshot(email) == before


def test_a_malformed_call_leaves_its_body_out_of_the_logs(configure: Any, webhook: Client, caplog: Any) -> None:
    provider = configure("amazon_ses")
    body = '{"Type": "Notification", "MessageId": "1", "Message": "' + PATIENT + '"'
    headers = {**basic(), "HTTP_X_AMZ_SNS_MESSAGE_ID": "1", "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification"}

    with caplog.at_level(logging.INFO):
        response = post(webhook, provider, body, "text/plain", headers)

    assert response.status_code == 400
    assert caplog.records
    assert all(PATIENT not in (record.getMessage() + str(record.exc_info)) for record in caplog.records)


def signing_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, "".join(pem.decode().splitlines()[1:-1])


def sendgrid_signature(private: ec.EllipticCurvePrivateKey, body: str, timestamp: str = "1795810022") -> dict[str, str]:
    signature = private.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))
    return {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
    }


def test_a_signed_sendgrid_report_is_taken_without_basic_auth(configure: Any, settings: Any, webhook: Client) -> None:
    provider = configure("sendgrid")
    private, public = signing_key()
    settings.ANYMAIL = {"SENDGRID_API_KEY": "SG.x", "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": public}
    email = sent_acknowledgment(provider)
    body, content_type, _ = sendgrid("bounce", "21", provider.message_id)

    response = post(webhook, provider, body, content_type, sendgrid_signature(private, body))

    assert response.status_code == 200
    email.refresh_from_db()
    assert email.state == OutboundEmail.State.BOUNCED


def test_a_sendgrid_report_signed_with_another_key_is_refused(configure: Any, settings: Any, webhook: Client) -> None:
    provider = configure("sendgrid")
    _, public = signing_key()
    other, _ = signing_key()
    settings.ANYMAIL = {"SENDGRID_API_KEY": "SG.x", "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": public}
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body, content_type, _ = sendgrid("bounce", "22", provider.message_id)

    response = post(webhook, provider, body, content_type, sendgrid_signature(other, body))

    assert response.status_code == 400
    assert snapshot(email) == before


def test_only_the_configured_providers_webhook_answers(configure: Any, webhook: Client) -> None:
    configure("postmark")
    provider = PROVIDERS["brevo"]
    body, content_type, headers = brevo("bounce", "1", provider.message_id)

    response = post(webhook, provider, body, content_type, {**headers, **basic()})

    assert response.status_code == 404


def test_with_plain_smtp_no_webhook_answers(settings: Any, webhook: Client, db: None) -> None:
    settings.EMAIL_PROVIDER = ""
    for key, provider in PROVIDERS.items():
        body, content_type, headers = provider.build("complaint", "1", provider.message_id)

        response = post(webhook, provider, body, content_type, {**headers, **basic()})

        assert response.status_code == 404, key


def test_a_webhook_whose_authentication_is_not_configured_refuses_every_call(
    configure: Any, settings: Any, webhook: Client
) -> None:
    provider = configure("postmark")
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "server-token"}  # no WEBHOOK_SECRET (DEBUG lets it start)
    email = sent_acknowledgment(provider)
    before = snapshot(email)

    response = report(webhook, provider, "bounce")

    assert response.status_code == 403
    assert snapshot(email) == before


# --- Sending through the provider -------------------------------------------------------


class FakePostmark:
    """Postmark's send API, as requests would reach it: answers with its
    JSON, keeps what it was sent."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.sent: list[dict[str, Any]] = []

    def request(self, session: Any, method: str, url: str, **kwargs: Any) -> Any:
        payload = json.loads(kwargs["data"])
        self.sent.append(payload)
        if self.refuse:
            status = 422
            answer: dict[str, Any] = {
                "ErrorCode": 406,
                "Message": "You tried to send to a recipient that has been marked as inactive.\n"
                f"Found inactive addresses: {payload['To']}.\n"
                "Inactive recipients are ones that have generated a hard bounce or a spam complaint. ",
            }
        else:
            status = 200
            answer = {
                "To": payload["To"],
                "SubmittedAt": "2026-11-27T12:00:00.0000000-05:00",
                "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
                "ErrorCode": 0,
                "Message": "OK",
            }
        return postmark_response(url, status, json.dumps(answer).encode())


def postmark_response(url: str, status: int, content: bytes) -> Any:
    """A response of Postmark's API, as requests hands it to anymail."""
    import requests

    response = requests.Response()
    response.url, response.status_code, response._content = url, status, content
    response.headers["Content-Type"] = "application/json"
    return response


@pytest.fixture
def fake_postmark(configure: Any, settings: Any, monkeypatch: Any) -> Callable[..., FakePostmark]:
    def _start(**kwargs: Any) -> FakePostmark:
        configure("postmark")
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            # As portal_reset/settings.py sets them for Postmark.
            "SEND_DEFAULTS": {"track_clicks": False, "track_opens": False},
        }
        fake = FakePostmark(**kwargs)
        import requests

        monkeypatch.setattr(
            requests.Session, "request", lambda session, method, url, **kw: fake.request(session, method, url, **kw)
        )
        return fake

    return _start


def test_an_email_sent_through_the_provider_keeps_its_message_id_and_is_not_tracked(fake_postmark: Any) -> None:
    fake = fake_postmark()
    email = OutboundEmailFactory(reset=ResetRequestFactory(email=PATIENT))

    results = email_send_many(email_ids=[email.pk])

    assert results[email.pk].state == OutboundEmail.State.SENT
    email.refresh_from_db()
    assert email.state == OutboundEmail.State.SENT
    assert email.provider_message_id == "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"
    [payload] = fake.sent
    assert payload["To"] == PATIENT
    assert payload["TrackOpens"] is False and payload["TrackLinks"] == "None"


def test_a_bounce_after_a_real_send_finds_its_email(fake_postmark: Any, webhook: Client) -> None:
    fake_postmark()
    email = OutboundEmailFactory(reset=ResetRequestFactory(email=PATIENT))
    email_send_many(email_ids=[email.pk])
    body, content_type, headers = postmark("bounce", "31", "b7bc2f4a-e38e-4336-af7d-e6c392c2f817")

    post(webhook, PROVIDERS["postmark"], body, content_type, {**headers, **basic()})

    email.refresh_from_db()
    assert email.state == OutboundEmail.State.BOUNCED
    assert ResetRequest.objects.get(pk=email.reset_id).email_undeliverable


def test_an_address_the_provider_refuses_at_sending_marks_the_request(fake_postmark: Any) -> None:
    fake_postmark(refuse=True)
    email = OutboundEmailFactory(reset=ResetRequestFactory(email=PATIENT))

    results = email_send_many(email_ids=[email.pk])

    assert results[email.pk].state == OutboundEmail.State.FAILED
    reset = ResetRequest.objects.get(pk=email.reset_id)
    assert reset.email_undeliverable
    messages = list(RequestEvent.objects.filter(reset=reset).values_list("message", flat=True))
    assert any(m.startswith("Acknowledgment refused by Postmark before sending") for m in messages)


# What a provider's API answers when it cannot send now, or cannot send this.
POSTMARK_FAILURES = {
    "its own error (503)": (503, {"ErrorCode": 0, "Message": "Service unavailable"}),
    "a rate limit (429)": (429, {"ErrorCode": 0, "Message": "Rate limit exceeded"}),
    "an answer it could not finish (200, not JSON)": (200, None),
    "an invalid message (422)": (422, {"ErrorCode": 300, "Message": "Invalid email request"}),
    "wrong credentials (401)": (401, {"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied"}),
}
POSTMARK_LATER = ["its own error (503)", "a rate limit (429)", "an answer it could not finish (200, not JSON)"]


def failing_postmark(monkeypatch: Any, status: int | None, answer: dict[str, Any] | None) -> list[str]:
    """Postmark's send API answering ``status`` with ``answer`` (None: a body
    that is not JSON); no status: the connection fails. Returns the
    recipients it was asked to send to."""
    import requests

    asked: list[str] = []

    def request(session: Any, method: str, url: str, **kwargs: Any) -> Any:
        asked.append(json.loads(kwargs["data"])["To"])
        if status is None:
            raise requests.ConnectionError("Connection refused")
        return postmark_response(
            url, status, b"<html>Bad gateway</html>" if answer is None else json.dumps(answer).encode()
        )

    monkeypatch.setattr(requests.Session, "request", request)
    return asked


@pytest.mark.parametrize("failure", list(POSTMARK_FAILURES))
def test_a_provider_that_cannot_send_now_gets_the_email_again_later_and_one_that_refuses_it_fails_it(
    failure: str, fake_postmark: Any, monkeypatch: Any
) -> None:
    fake_postmark()
    status, answer = POSTMARK_FAILURES[failure]
    asked = failing_postmark(monkeypatch, status, answer)
    email = OutboundEmailFactory(reset=ResetRequestFactory(email=PATIENT))

    results = email_send_many(email_ids=[email.pk])

    assert asked == [PATIENT]
    email.refresh_from_db()
    events = list(RequestEvent.objects.filter(reset_id=email.reset_id).values_list("kind", flat=True))
    if failure in POSTMARK_LATER:
        assert results[email.pk].state == email.state == OutboundEmail.State.PENDING
        assert results[email.pk].retry_in is not None and email.next_attempt_at > timezone.now()
        assert RequestEvent.Kind.EMAIL_FAILED not in events
    else:
        assert results[email.pk].state == email.state == OutboundEmail.State.FAILED
        assert events.count(RequestEvent.Kind.EMAIL_FAILED) == 1
    assert email.attempts == 1 and str(status) in email.last_error


def test_a_provider_out_of_reach_gets_the_email_again_and_it_goes_out_once(
    fake_postmark: Any, monkeypatch: Any, time_machine: Any
) -> None:
    import requests

    time_machine.move_to(timezone.now(), tick=False)
    fake = fake_postmark()
    reachable = requests.Session.request
    failing_postmark(monkeypatch, None, None)
    email = OutboundEmailFactory(reset=ResetRequestFactory(email=PATIENT))

    assert email_send_many(email_ids=[email.pk])[email.pk].state == OutboundEmail.State.PENDING
    monkeypatch.setattr(requests.Session, "request", reachable)
    assert email_send_many(email_ids=[email.pk])[email.pk].state == OutboundEmail.State.PENDING  # its backoff first
    time_machine.shift(timedelta(minutes=31))
    assert email_send_many(email_ids=[email.pk])[email.pk].state == OutboundEmail.State.SENT

    email.refresh_from_db()
    assert email.state == OutboundEmail.State.SENT and email.attempts == 2
    assert [payload["To"] for payload in fake.sent] == [PATIENT]


# What Amazon SES (through boto3) answers: an AWS error's name and HTTP status, or no answer.
SES_FAILURES = {
    "throttled (400 Throttling)": ("Throttling", 400, True),
    "too many requests (429)": ("TooManyRequestsException", 429, True),
    "its own error (500)": ("InternalFailure", 500, True),
    "no answer (a connection error)": (None, None, True),
    "a rejected message (400 MessageRejected)": ("MessageRejected", 400, False),
    "an unverified sender (400)": ("MailFromDomainNotVerifiedException", 400, False),
}


@pytest.mark.parametrize("failure", list(SES_FAILURES))
def test_amazon_ses_throttled_or_out_of_reach_gets_the_email_again_and_a_refusal_fails_it(
    failure: str, configure: Any, settings: Any, monkeypatch: Any
) -> None:
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError, EndpointConnectionError

    configure("amazon_ses")
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_CLIENT_PARAMS": {
            "region_name": "us-east-1",
            "aws_access_key_id": "x",
            "aws_secret_access_key": "y",
        },
    }
    code, status, later = SES_FAILURES[failure]
    asked: list[str] = []

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        asked.append(operation)
        if code is None:
            raise EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com")
        error = {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        raise ClientError(error, operation)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    email = OutboundEmailFactory(reset=ResetRequestFactory(email=PATIENT))

    result = email_send_many(email_ids=[email.pk])[email.pk]

    assert asked == ["SendEmail"]
    email.refresh_from_db()
    expected = OutboundEmail.State.PENDING if later else OutboundEmail.State.FAILED
    assert result.state == email.state == expected
    assert email.attempts == 1 and (code or "Could not connect") in email.last_error


def test_with_plain_smtp_nothing_is_stored_for_the_provider(settings: Any, db: None) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email = OutboundEmailFactory()

    email_send_many(email_ids=[email.pk])

    email.refresh_from_db()
    assert email.state == OutboundEmail.State.SENT and email.provider_message_id == ""


# --- Settings ------------------------------------------------------------------------------


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "VAR_DIR": str(tmp_path),
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "resets.example.org",
        "SITE_URL": "https://resets.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CACHE_URL": "locmemcache://",
        "CELERY_BROKER_URL": "memory://",
        "DEFAULT_FROM_EMAIL": "resets@example.org",
        "STAFF_NOTIFY_EMAIL": "desk@example.org",
        **extra,
    }


def settings_of(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup(); from django.conf import settings; " + code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "portal_reset.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("provider", "missing"),
    [
        ("postmark", "POSTMARK_SERVER_TOKEN, ANYMAIL_WEBHOOK_SECRET"),
        ("amazon_ses", "ANYMAIL_WEBHOOK_SECRET"),
        ("mailgun", "MAILGUN_API_KEY, MAILGUN_WEBHOOK_SIGNING_KEY"),
        ("sendgrid", "SENDGRID_API_KEY, ANYMAIL_WEBHOOK_SECRET or SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"),
        ("brevo", "BREVO_API_KEY, ANYMAIL_WEBHOOK_SECRET"),
    ],
)
def test_a_provider_without_its_values_refuses_to_start_naming_them(
    provider: str, missing: str, tmp_path: Path
) -> None:
    result = settings_of(production_env(tmp_path, EMAIL_PROVIDER=provider), "print(settings.EMAIL_BACKEND)")

    assert result.returncode != 0
    assert f"must be set in the environment: {missing}." in result.stderr
    assert "EMAIL_HOST" not in result.stderr.split("must be set")[1]


def test_a_configured_provider_sends_through_anymail_without_tracking(tmp_path: Path) -> None:
    env = production_env(
        tmp_path, EMAIL_PROVIDER="postmark", POSTMARK_SERVER_TOKEN="server-token", ANYMAIL_WEBHOOK_SECRET=SECRET
    )

    result = settings_of(env, "print(json.dumps([settings.EMAIL_BACKEND, settings.ANYMAIL]))")

    assert result.returncode == 0, result.stderr
    backend, anymail = json.loads(result.stdout)
    assert backend == "anymail.backends.postmark.EmailBackend"
    assert anymail == {
        "POSTMARK_SERVER_TOKEN": "server-token",
        "WEBHOOK_SECRET": SECRET,
        "SEND_DEFAULTS": {"track_clicks": False, "track_opens": False},
    }


def test_an_unknown_provider_refuses_to_start(tmp_path: Path) -> None:
    result = settings_of(production_env(tmp_path, EMAIL_PROVIDER="pigeon", EMAIL_HOST="smtp"), "print(1)")

    assert result.returncode != 0
    assert "EMAIL_PROVIDER 'pigeon' is not one of: postmark, amazon_ses, mailgun, sendgrid, brevo" in result.stderr


def test_a_report_larger_than_any_request_the_app_takes_answers_400(configure: Any, webhook: Client) -> None:
    provider = configure("postmark")
    email = sent_acknowledgment(provider)
    before = snapshot(email)
    body = json.loads(postmark("bounce", "41", provider.message_id)[0])
    body["Content"] = "x" * 70_000  # Postmark's "include bounce content"

    response = post(webhook, provider, json.dumps(body), "application/json", basic())

    assert response.status_code == 400
    assert snapshot(email) == before
