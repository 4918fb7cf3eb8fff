"""`manage.py setup_staff_group`: the least-privilege group staff work in,
and what a member of it can and cannot reach in the admin."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from requests_app.models import MessageTemplate

from .factories import ResetRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

STAFF_PERMISSIONS = {
    "requests_app.view_resetrequest",
    "requests_app.change_resetrequest",
    "requests_app.view_familymember",
    "requests_app.view_requestevent",
    "requests_app.add_requestevent",
    "requests_app.view_outboundemail",
    # Held submissions: staff release them or delete them as spam.
    "requests_app.view_heldsubmission",
    "requests_app.change_heldsubmission",
    # The practice's messages to patients: staff read and send them; only a
    # practice manager edits them.
    "requests_app.view_messagetemplate",
}


def setup_group(*args: str) -> str:
    out = io.StringIO()
    call_command("setup_staff_group", *args, stdout=out)
    return out.getvalue()


def group_permissions() -> set[str]:
    group = Group.objects.get(name="Reset staff")
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_it_creates_the_group_with_exactly_the_staff_permissions():
    output = setup_group()

    assert group_permissions() == STAFF_PERMISSIONS
    assert "Created group 'Reset staff'" in output


def test_it_can_run_again_and_puts_back_exactly_those_permissions():
    setup_group()
    group = Group.objects.get(name="Reset staff")
    group.permissions.add(Permission.objects.get(codename="delete_resetrequest"))

    output = setup_group()

    assert Group.objects.filter(name="Reset staff").count() == 1
    assert group_permissions() == STAFF_PERMISSIONS
    assert "Updated group 'Reset staff'" in output


def test_it_puts_a_named_user_in_the_group_and_lets_them_sign_in_to_the_admin():
    user = StaffUserFactory(username="nina", is_staff=False)

    setup_group("--user", "nina")

    user.refresh_from_db()
    assert user.is_staff
    assert user.get_all_permissions() == STAFF_PERMISSIONS


def test_it_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        setup_group("--user", "ghost")


def test_it_lets_a_member_work_the_queue(staff_client):
    rr = ResetRequestFactory()

    assert staff_client.get("/admin/requests_app/resetrequest/").status_code == 200
    assert staff_client.get(f"/admin/requests_app/resetrequest/{rr.pk}/change/").status_code == 200
    assert staff_client.get("/admin/requests_app/outboundemail/").status_code == 200


@pytest.mark.parametrize("path", ["/admin/auth/user/", "/admin/auth/group/", "/admin/auth/user/add/"])
def test_it_keeps_a_member_out_of_user_management(staff_client, path):
    assert staff_client.get(path).status_code == 403


def test_it_keeps_a_member_from_deleting_a_request(staff_client):
    rr = ResetRequestFactory()

    response = staff_client.post(f"/admin/requests_app/resetrequest/{rr.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert rr.__class__.objects.filter(pk=rr.pk).exists()


def test_it_keeps_the_workflow_from_staff_who_may_only_read(client, staff_user):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_resetrequest"))
    client.force_login(staff_user)
    rr = ResetRequestFactory()

    page = client.get(f"/admin/requests_app/resetrequest/{rr.pk}/change/")
    start = client.post(f"/admin/requests_app/resetrequest/{rr.pk}/start/", {"expected_status": "new"})

    assert page.status_code == 200
    assert f"/admin/requests_app/resetrequest/{rr.pk}/start/".encode() not in page.content
    assert start.status_code == 403
    rr.refresh_from_db()
    assert rr.status == "new"


def test_it_keeps_a_member_out_of_the_record_of_exports(staff_client, staff):
    """Who exported which list is for an auditor (a practice manager), not
    for the staff whose exports it records."""
    assert "requests_app.view_exportrecord" not in staff.get_all_permissions()
    assert staff_client.get("/admin/requests_app/exportrecord/").status_code == 403
    assert b"/admin/requests_app/exportrecord/" not in staff_client.get("/admin/").content


def test_it_lets_a_member_read_the_message_templates_but_not_change_them(staff_client):
    template = MessageTemplate.objects.get(title="We tried to call you")
    before = template.body_en
    url = f"/admin/requests_app/messagetemplate/{template.pk}/change/"

    listed = staff_client.get("/admin/requests_app/messagetemplate/")
    page = staff_client.get(url)
    changed = {"title": template.title, "body_en": "Call us now.", "body_es": "Llámenos.", "position": "0"}
    response = staff_client.post(url, {**changed, "is_active": "on"})

    assert listed.status_code == 200
    assert page.status_code == 200
    assert b'name="body_en"' not in page.content  # shown read-only, no form field
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.body_en == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/admin/requests_app/messagetemplate/add/"),
        ("post", "/admin/requests_app/messagetemplate/{pk}/delete/"),
    ],
)
def test_it_keeps_a_member_from_adding_or_deleting_message_templates(staff_client, method, path):
    template = MessageTemplate.objects.first()
    assert template is not None

    response = getattr(staff_client, method)(path.format(pk=template.pk), {"post": "yes"} if method == "post" else {})

    assert response.status_code == 403
    assert MessageTemplate.objects.filter(pk=template.pk).exists()
