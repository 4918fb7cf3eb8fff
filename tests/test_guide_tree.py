"""The guided help: the start page at /, then the practice's decision tree
one question per page under /help/<slug>/ (requests_app/guide_tree.py).

Every step is reachable from /, every answer leads to a step, nothing is a
dead end; each end step asks "Did this solve it?", whose answers are counted
per step, answer and practice day and nothing else (no cookie, no personal
data), CSRF-exempt, limited per client address. The pages carry the
practice's own facts, with the portal's name and links from settings, and
are indexable (a meta description, no noindex) while the other patient pages
stay out of search engines. The staff dashboard shows the yes answers of the
last 30 days against the requests filed in them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps
from django.db import connection, transaction
from django.db.models import QuerySet
from django.test import Client
from django.test.utils import CaptureQueriesContext

from requests_app import guide_tree, selectors
from requests_app.guide_tree import STEPS, Window
from requests_app.models import HelpFeedback

from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")
APOSTROPHE = "\N{RIGHT SINGLE QUOTATION MARK}"
QUESTIONS = [slug for slug, step in STEPS.items() if not step.is_end]
ENDS = [slug for slug, step in STEPS.items() if step.is_end]
GUIDE_PAGES = ["/", *(f"/help/{slug}/" for slug in STEPS)]


def step_url(slug: str) -> str:
    return f"/help/{slug}/"


def main_of(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


def links(html: str) -> list[str]:
    """Every link in the page's <main>, as written."""
    return [unescape(href) for href in re.findall(r'<a [^>]*href="([^"]*)"', main_of(html))]


def answer_links(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'<a class="help-answer" href="([^"]*)"', main_of(html))]


def text_of(html: str) -> str:
    """The words of <main>, tags removed, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", main_of(html))).split())


def get(client: Client, path: str, **extra: Any) -> str:
    response = client.get(path, **extra)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


def answer(client: Client, slug: str, value: str, **extra: Any) -> Any:
    return client.post(f"/help/{slug}/feedback/", {"answer": value}, **extra)


def counts() -> dict[tuple[str, str, str], int]:
    return {(str(r.day), r.step, r.answer): r.count for r in HelpFeedback.objects.all()}


# --- The tree -----------------------------------------------------------------------


def test_it_reaches_every_step_from_the_start_page_by_following_the_answers(client):
    start = get(client, "/")
    [first] = [href for href in links(start) if href.startswith("/help/")]
    assert first == step_url(guide_tree.FIRST)

    seen, todo = set(), [first]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(answer_links(get(client, path)))

    assert seen == {step_url(slug) for slug in STEPS}


def test_it_leads_every_answer_to_a_step_that_exists():
    for step in STEPS.values():
        for each in step.answers:
            assert each.next in STEPS, (step.slug, each.next)
        if step.then:
            assert STEPS[step.then].is_end, step.slug


def test_it_has_no_dead_end_and_no_loop():
    # Every question offers a choice; every way through ends at an end step.
    for slug in QUESTIONS:
        assert len(STEPS[slug].answers) >= 2, slug
    paths = list(guide_tree.paths())
    assert {path[-1] for path in paths} == set(ENDS)
    for path in paths:
        assert len(path) == len(set(path)), f"a loop: {path}"
        assert STEPS[path[-1]].is_end
    # A tree: each step has one way in, so its Back link is never wrong.
    ways_in = [each.next for step in STEPS.values() for each in step.answers]
    assert sorted(ways_in) == sorted(set(STEPS) - {guide_tree.FIRST})


def test_it_follows_the_practice_s_order_of_steps():
    # used the portal with another doctor → family sharing → intake form →
    # 48 hours → the invitation email → the security code / password → reset.
    [longest] = [p for p in guide_tree.paths() if p[-1] == "security-code"]
    assert longest == (
        "other-doctor",
        "shared-email",
        "intake-form",
        "since-visit",
        "found-email",
        "where-stuck",
        "security-code",
    )
    assert STEPS["other-doctor"].answers[0].next == "same-login"
    assert STEPS["shared-email"].answers[0].next == "family-sharing"
    assert STEPS["intake-form"].answers[0].next == "intake-login"
    assert [a.next for a in STEPS["since-visit"].answers] == ["found-email", "request-reset"]
    assert [a.next for a in STEPS["found-email"].answers] == ["where-stuck", "invitation-email"]
    assert [a.next for a in STEPS["where-stuck"].answers] == ["security-code", "password-help"]


@pytest.mark.parametrize("slug", list(STEPS))
def test_it_links_back_to_the_previous_step(client, slug):
    html = get(client, step_url(slug))

    back = re.search(r'<a class="back-link" href="([^"]*)">Back</a>', html)
    parent = guide_tree.PARENTS.get(slug)
    assert back, slug
    assert back[1] == (step_url(parent) if parent else "/")
    if parent:
        assert step_url(slug) in answer_links(get(client, back[1]))


@pytest.mark.parametrize("slug", QUESTIONS)
def test_it_asks_one_question_per_page_with_answers_as_plain_links(client, slug):
    html = get(client, step_url(slug))

    assert len(re.findall(r"<h1[ >]", html)) == 1
    assert "<form" not in html  # plain GET links: no script, no POST
    assert answer_links(html) == [step_url(a.next) for a in STEPS[slug].answers]


@pytest.mark.parametrize("slug", ENDS)
def test_it_asks_did_this_solve_it_on_every_end_step_in_a_small_post_form(client, slug):
    html = get(client, step_url(slug))

    forms = re.findall(r"<form [^>]*>.*?</form>", html, re.S)
    assert len(forms) == 1, slug
    [form] = forms
    assert 'method="post"' in form
    assert f'action="/help/{slug}/feedback/"' in form
    assert "Did this solve it?" in form
    buttons = re.findall(r'<button [^>]*type="submit" name="answer" value="([a-z]+)"', form)
    assert buttons == ["yes", "no"]
    assert "csrfmiddlewaretoken" not in html


@pytest.mark.parametrize("slug", QUESTIONS)
def test_it_asks_nothing_about_a_question(client, slug):
    assert "Did this solve it?" not in get(client, step_url(slug))


@pytest.mark.parametrize("slug", ENDS)
def test_it_offers_a_way_on_from_every_end_step_and_after_every_no(client, slug):
    on_the_step = [href for href in links(get(client, step_url(slug))) if href != step_url(guide_tree.PARENTS[slug])]
    assert on_the_step, f"{slug} offers nothing to do"

    after_no = links(get(client, f"/help/{slug}/not-solved/"))
    step = STEPS[slug]
    if step.then:
        assert step_url(step.then) in after_no
    if step.window is Window.PASSED:
        assert "mailto:frontdesk@practice.example" in after_no
    else:
        assert "/reset/" in after_no


def test_it_answers_404_for_a_step_it_does_not_have(client):
    assert client.get("/help/no-such-step/").status_code == 404
    assert client.get("/help/same-login/solved/").status_code == 200
    # A question has no thank-you pages.
    assert client.get("/help/other-doctor/solved/").status_code == 404
    assert client.get("/help/other-doctor/not-solved/").status_code == 404
    assert client.get("/help/no-such-step/not-solved/").status_code == 404


# --- The start page -------------------------------------------------------------------


def test_it_starts_with_a_heading_a_start_button_and_the_two_ways_out(client):
    html = get(client, "/")

    main = main_of(html)
    assert f"<h1>Can{APOSTROPHE}t get into your patient portal?</h1>" in main
    start = re.search(r'<a class="btn btn-start" href="([^"]*)"[^>]*>Start now', main)
    assert start and start[1] == "/help/other-doctor/"
    direct = re.search(r'<a href="/reset/">([^<]*)</a>', main)
    assert direct and direct[1] == f"It{APOSTROPHE}s more than 48 hours since my visit: ask us to reset my access"
    assert '<a href="https://www.patientfusion.com/">Go to the Patient Fusion login page</a>' in main
    # The ways out come right after the button, nothing long in between.
    assert main.index("btn-start") < main.index('href="/reset/"') < main.index("patientfusion.com")
    assert len(text_of(html)) < 400


# --- The practice's facts, and nothing else ----------------------------------------


def test_it_tells_the_patient_to_use_the_same_login_as_with_another_doctor(client):
    text = text_of(get(client, "/help/same-login/"))
    assert "Use the same login" in text
    assert 'href="https://www.patientfusion.com/"' in get(client, "/help/same-login/")


def test_it_states_the_family_sharing_rule(client):
    text = text_of(get(client, "/help/family-sharing/"))
    assert "Family members who share one email address use one portal login for all of them." in text
    assert "Someone who needs their own portal needs their own email address." in text


def test_it_sends_an_intake_form_patient_to_the_login_page(client):
    html = get(client, "/help/intake-login/")
    assert "The online intake form we sent with your appointment reminder created your portal login." in text_of(html)
    assert 'href="https://www.patientfusion.com/"' in html


def test_it_offers_both_ways_to_set_up_access(client):
    text = text_of(get(client, "/help/intake-form/"))
    assert "appointment reminder" in text
    assert "The form is one way to set up your portal access." in text
    assert "The other is the invitation link we email after your visit." in text


def test_it_tells_when_the_invitation_comes_from_whom_and_where_to_look(client):
    text = text_of(get(client, "/help/invitation-email/"))
    assert "after your visit, once your provider has signed the visit notes" in text
    assert "We send the invitation through the portal, so the email comes from Patient Fusion on our behalf." in text
    assert "Spam or Junk" in text
    assert "Promotions, Social and Primary tabs" in text
    assert "within 48 hours" in text


def test_it_says_who_sends_the_invitation_the_same_way_wherever_it_says_it(client):
    sentence = "We send the invitation through the portal, so the email comes from Patient Fusion on our behalf."
    mentions = [path for path in GUIDE_PAGES if "on our behalf" in text_of(get(client, path))]
    assert mentions
    for path in mentions:
        assert sentence in text_of(get(client, path)), path


def test_it_points_to_the_text_message_link_below_the_code_box(client):
    text = text_of(get(client, "/help/security-code/"))
    assert "“send me the code via text message”" in text
    assert "Below the box for the code" in text
    assert "the email that the portal refers to" in text
    assert "We recommend it." in text


def test_it_links_to_the_portal_s_own_help_for_password_and_user_name(client, settings):
    html = get(client, "/help/password-help/")
    assert f'href="{settings.PORTAL_TROUBLE_URL}"' in html
    assert f'href="{settings.PORTAL_HELP_URL}"' in html
    assert f"I{APOSTROPHE}m having trouble logging in" in text_of(html)


def test_it_sends_a_patient_past_the_window_to_the_reset_request(client):
    html = get(client, "/help/request-reset/")
    assert "More than 48 hours since your visit" in text_of(html)
    assert '<a class="btn btn-primary btn-cta" href="/reset/">Ask us to reset my portal access</a>' in html


def test_it_promises_nothing_the_practice_did_not_say(client):
    for path in GUIDE_PAGES:
        text = text_of(get(client, path)).lower()
        assert "few seconds" not in text, path
        assert "minutes" not in text, path


def test_it_takes_the_portal_s_name_links_and_the_window_from_settings(client, settings):
    settings.PORTAL_NAME = "HealthVault Nine"
    settings.PORTAL_LOGIN_URL = "https://login.portal.example/"
    settings.PORTAL_HELP_URL = "https://help.portal.example/"
    settings.PORTAL_TROUBLE_URL = "https://help.portal.example/trouble"
    settings.ACCESS_LINK_HOURS = 72

    for path in GUIDE_PAGES:
        html = get(client, path)
        assert "Patient Fusion" not in html, path
        assert "patientfusion.com" not in html, path
        assert "48" not in text_of(html), path
    assert "HealthVault Nine" in get(client, "/help/other-doctor/")
    assert "72 hours" in text_of(get(client, "/"))
    assert "More than 72 hours ago" in text_of(get(client, "/help/since-visit/"))
    assert 'href="https://login.portal.example/"' in get(client, "/")
    assert 'href="https://help.portal.example/trouble"' in get(client, "/help/password-help/")


# --- Search engines -------------------------------------------------------------------


def head_of(html: str) -> str:
    return html[: html.index("</head>")]


@pytest.mark.parametrize("path", GUIDE_PAGES)
def test_it_lets_search_engines_index_the_guide_with_a_description(client, path):
    head = head_of(get(client, path))

    assert "noindex" not in head
    description = re.search(r'<meta name="description" content="([^"]+)">', head)
    assert description and len(unescape(description[1])) > 40, path


def test_it_gives_every_guide_page_its_own_title_and_description(client):
    titles, descriptions = set(), set()
    for path in GUIDE_PAGES:
        head = head_of(get(client, path))
        titles.add(re.search(r"<title>([^<]*)</title>", head)[1])  # type: ignore[index]
        descriptions.add(re.search(r'<meta name="description" content="([^"]+)">', head)[1])  # type: ignore[index]

    assert len(titles) == len(descriptions) == len(GUIDE_PAGES)
    assert "<title>Have you used Patient Fusion before, with another doctor? · IFM</title>" in get(
        client, "/help/other-doctor/"
    )


def test_it_keeps_the_other_patient_pages_out_of_search_engines(client, submit, form_data):
    submit(form_data())
    reset = apps.get_model("requests_app", "ResetRequest").objects.get()
    for path in [
        "/reset/",
        f"/reset/submitted/{reset.reference}/",
        reset.get_status_url(),
        "/help/same-login/solved/",
        "/help/same-login/not-solved/",
    ]:
        head = head_of(get(client, path))
        assert '<meta name="robots" content="noindex">' in head, path
        assert '<meta name="description"' not in head, path


# --- "Did this solve it?": counts only -------------------------------------------------


def test_it_counts_each_answer_per_step_answer_and_practice_day(client, settings):
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    # 23:30 in New York is already the next day in UTC: the practice's day counts.
    with time_machine.travel(datetime(2026, 3, 11, 23, 30, tzinfo=NY), tick=False):
        answer(client, "same-login", "yes")
        answer(client, "same-login", "yes")
        answer(client, "same-login", "no")
        answer(client, "security-code", "yes")
    with time_machine.travel(datetime(2026, 3, 12, 9, 0, tzinfo=NY), tick=False):
        answer(client, "same-login", "yes")

    assert counts() == {
        ("2026-03-11", "same-login", "yes"): 2,
        ("2026-03-11", "same-login", "no"): 1,
        ("2026-03-11", "security-code", "yes"): 1,
        ("2026-03-12", "same-login", "yes"): 1,
    }


@pytest.mark.parametrize(("value", "thanks"), [("yes", "solved"), ("no", "not-solved")])
def test_it_thanks_the_patient_with_a_redirect(client, value, thanks):
    response = answer(client, "password-help", value)

    assert response.status_code == 303
    assert response["Location"] == f"/help/password-help/{thanks}/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "Thank you" in text_of(page.content.decode())


def test_it_stores_nothing_but_the_counts_and_sets_no_cookie(client):
    others = [m for m in apps.get_models() if m is not HelpFeedback]
    before = {m._meta.label: m._default_manager.count() for m in others}
    responses = [client.get(path) for path in GUIDE_PAGES]
    responses += [answer(client, slug, "yes", HTTP_USER_AGENT="Ana's phone") for slug in ENDS]
    responses += [answer(client, "same-login", "no"), answer(client, "nope", "yes")]
    responses += [client.get(f"/help/{slug}/{page}/") for slug in ENDS for page in ("solved", "not-solved")]

    assert {m._meta.label: m._default_manager.count() for m in others} == before
    for response in responses:
        assert not response.cookies, (response.request["PATH_INFO"], response.cookies)
        assert "Set-Cookie" not in response
    # A count and what it counts, nothing that tells one patient from another.
    assert {f.name for f in HelpFeedback._meta.get_fields()} == {"id", "day", "step", "answer", "count"}
    assert sum(counts().values()) == len(ENDS) + 1


def test_it_takes_an_answer_without_a_csrf_token(settings):
    csrf_checking = Client(enforce_csrf_checks=True)

    response = answer(csrf_checking, "family-sharing", "no")

    assert response.status_code == 303
    assert sum(counts().values()) == 1


def test_it_adds_to_a_row_created_by_a_concurrent_answer(client):
    """The row is created between this answer's update (which found none)
    and its insert: the unique constraint refuses the second row and the
    answer is counted on the first."""
    day = datetime.now(NY).date()
    HelpFeedback.objects.create(day=day, step="same-login", answer="yes", count=1)
    real_update = QuerySet.update
    missed = []

    def update_missing_once(self: QuerySet[Any], **kwargs: Any) -> int:
        if self.model is HelpFeedback and not missed:
            missed.append(True)
            return 0  # as if the row were not there yet
        return real_update(self, **kwargs)

    with mock.patch.object(QuerySet, "update", update_missing_once), transaction.atomic():
        HelpFeedback.record(step="same-login", answer="yes", day=day)
        # The lost race rolled back a savepoint only: the transaction goes on.
        HelpFeedback.record(step="same-login", answer="no", day=day)

    assert missed == [True]
    assert counts() == {(str(day), "same-login", "yes"): 2, (str(day), "same-login", "no"): 1}


def test_it_counts_with_one_update_once_the_day_s_row_exists(client, django_assert_num_queries):
    answer(client, "same-login", "yes")

    with django_assert_num_queries(1):
        answer(client, "same-login", "yes")

    assert list(counts().values()) == [2]


# --- The limit, and bad answers -----------------------------------------------------


def test_it_stops_counting_past_30_answers_an_hour_from_one_address(client):
    for _ in range(35):
        response = answer(client, "same-login", "yes", REMOTE_ADDR="203.0.113.7")
        # Still thanked: the limit guards the counts, not the patient's next step.
        assert response.status_code == 303
    answer(client, "same-login", "yes", REMOTE_ADDR="198.51.100.2")

    assert sum(counts().values()) == 31


def test_it_counts_when_the_cache_that_holds_the_limit_is_down(client):
    with mock.patch("requests_app.rate_limits._count", side_effect=ConnectionError("cache down")):
        response = answer(client, "same-login", "no")

    assert response.status_code == 303
    assert sum(counts().values()) == 1


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/help/no-such-step/feedback/", {"answer": "yes"}),
        ("/help/other-doctor/feedback/", {"answer": "yes"}),  # a question, not an end step
        ("/help/same-login/feedback/", {"answer": "maybe"}),
        ("/help/same-login/feedback/", {"answer": ""}),
        ("/help/same-login/feedback/", {"answer": "YES"}),
        ("/help/same-login/feedback/", {}),
        ("/help/same-login/feedback/", {"answer": "yes\x00"}),
        ("/help/Same Login!/feedback/", {"answer": "yes"}),
    ],
)
def test_it_refuses_a_bad_answer_with_400_and_counts_nothing(client, path, data):
    response = client.post(path, data)

    assert response.status_code == 400
    assert "We could not read your answer" in response.content.decode()
    assert not HelpFeedback.objects.exists()


@pytest.mark.parametrize("method", ["get", "head", "put", "delete"])
def test_it_answers_405_to_anything_but_a_post_on_the_feedback_url(client, method):
    assert getattr(client, method)("/help/same-login/feedback/").status_code == 405
    assert getattr(client, method)("/help/no-such-step/feedback/").status_code == 405


def test_it_answers_405_to_a_post_on_a_step(client):
    assert client.post("/help/same-login/", {"answer": "yes"}).status_code == 405


# --- What a page costs ----------------------------------------------------------------


def test_it_reads_nothing_from_the_database_to_show_a_step(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        for path in GUIDE_PAGES:
            client.get(path)
        for slug in ENDS:
            client.get(f"/help/{slug}/solved/")
            client.get(f"/help/{slug}/not-solved/")


# --- The staff dashboard ----------------------------------------------------------------

WEDNESDAY = datetime(2026, 3, 11, 15, 0, tzinfo=NY)


@pytest.fixture
def wednesday(time_machine: Any, settings: Any) -> datetime:
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    time_machine.move_to(WEDNESDAY, tick=False)
    return WEDNESDAY


def feedback(days_ago: int, step: str, value: str, count: int) -> None:
    HelpFeedback.objects.create(day=WEDNESDAY.date() - timedelta(days=days_ago), step=step, answer=value, count=count)


@pytest.fixture
def answered_and_filed(wednesday: datetime) -> None:
    feedback(0, "same-login", "yes", 3)
    feedback(0, "same-login", "no", 50)  # a no is no help
    feedback(29, "security-code", "yes", 2)  # the first of the 30 days
    feedback(30, "security-code", "yes", 100)  # the day before them
    # Filed in the 30 days: open, and ended since.
    ResetRequestFactory(submitted_at=wednesday - timedelta(hours=1))
    ResetRequestFactory(closed=True, submitted_at=wednesday - timedelta(days=20), ended_at=wednesday)
    start_of_first_day = datetime(2026, 2, 10, 0, 0, tzinfo=NY)
    ResetRequestFactory(
        resolved=True, submitted_at=start_of_first_day, ended_at=start_of_first_day + timedelta(hours=1)
    )
    # Filed before them: still open, or ended in the window.
    ResetRequestFactory(submitted_at=start_of_first_day - timedelta(minutes=1))
    ResetRequestFactory(
        resolved=True, submitted_at=start_of_first_day - timedelta(days=2), ended_at=wednesday - timedelta(days=3)
    )


def test_it_counts_the_yes_answers_and_the_requests_filed_in_the_last_30_days(answered_and_filed):
    numbers = selectors.queue_dashboard()

    assert numbers["helped"] == 5
    assert numbers["requests_filed"] == 3
    assert numbers["help_window_days"] == 30


def test_it_counts_zero_when_nobody_answered(wednesday):
    numbers = selectors.queue_dashboard()

    assert (numbers["helped"], numbers["requests_filed"]) == (0, 0)


def test_it_adds_one_query_for_the_guide_to_the_dashboard(answered_and_filed, django_assert_num_queries):
    for days in range(1, 25):
        feedback(days, "intake-login", "yes", days)
        ResetRequestFactory(resolved=True, ended_at=WEDNESDAY - timedelta(days=days))

    # The requests' counts, the median's middle rows (SQLite), the held
    # submissions, the guide's yes answers.
    with CaptureQueriesContext(connection) as queries:
        selectors.queue_dashboard()

    assert len(queries) == 4
    on_feedback = [q["sql"] for q in queries.captured_queries if "requests_app_helpfeedback" in q["sql"]]
    assert len(on_feedback) == 1
    assert "SUM" in on_feedback[0].upper()


def test_it_shows_the_guide_s_tile_on_the_admin_index(staff_client, answered_and_filed):
    page = staff_client.get("/admin/").content.decode()

    tile = re.search(r'<li class="rr-tile rr-tile-helped">(.*?)</li>', page, re.S)
    assert tile, "no tile for the guide"
    body = " ".join(tile[1].split())
    assert '<span class="rr-tile-value">5</span>' in body
    assert '<span class="rr-tile-label">Helped by the guide</span>' in body
    assert '<span class="rr-tile-hint">5 said yes, 3 requests filed (last 30 days)</span>' in body
