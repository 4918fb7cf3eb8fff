"""Every patient page and every patient email is valid HTML: the Nu HTML
checker (npm ``vnu-jar``, on the machine's Java; tests/support/checkers.py)
reports no error in any of them.

The pages are fetched with Django's test client, in English and in Spanish,
in each state a patient can see: the start page and every page reachable
from it by following links (every /help/ step, and the thank-you pages its
"Did this solve it?" buttons lead to), the reset form empty, with errors and
with a family member's error, the too-early page, the confirmation, a status
page at each step (and what it links to), the rate-limited page, the
refused-feedback page, and the 400, 403, 404 and 500 pages. The emails are
the HTML part of each patient email (acknowledgment, resolved, closed) as
the outbox builds it, in both languages: mail clients get a whole document,
so each is checked as one. All files go to one run of the checker.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client, RequestFactory
from django.urls import get_resolver

from requests_app.models import OutboundEmail
from requests_app.outbox.render import build_message
from requests_app.practice_time import practice_today

from .conftest import valid_form_data
from .factories import OutboundEmailFactory, ResetRequestFactory
from .support.checkers import NuChecker, NuMessage, page_forms, page_links

pytest_plugins = ["tests.support.checkers"]

LANGUAGES = ("en", "es")
PATIENT_EMAILS = (OutboundEmail.Kind.ACKNOWLEDGMENT, OutboundEmail.Kind.RESOLVED, OutboundEmail.Kind.CLOSED)
# A status page for each step a patient sees (selectors.public_step).
STATUS_TRAITS = {"received": {}, "verifying": {"in_progress": True}, "waiting": {"waiting": True},
                 "reset": {"resolved": True}, "closed": {"closed": True}}  # fmt: skip
# Not patient pages, or not pages: never followed.
NOT_FOLLOWED = re.compile(r"^/(admin|static|media)/|^/healthz|[?&]lang=")
MAX_PAGES = 300


@dataclass
class Document:
    name: str  # the file's name, e.g. page-es-help-other-doctor.html
    source: str  # where it came from: "GET /help/x/ (es)", "email acknowledgment (en)"
    html: str


class Collector:
    """The documents to check, each once (pages that come out byte for byte
    the same are checked once), and what went wrong fetching them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.documents: dict[str, Document] = {}
        self.problems: list[str] = []
        self._seen: set[str] = set()

    def add(self, name: str, source: str, html: str) -> None:
        digest = hashlib.sha256(html.encode()).hexdigest()
        if digest in self._seen:
            return
        self._seen.add(digest)
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:90]
        name = f"{slug}.html"
        n = 2
        while name in self.documents:
            name = f"{slug}-{n}.html"
            n += 1
        self.documents[name] = Document(name=name, source=source, html=html)

    def add_response(self, name: str, source: str, response: Any, *, status: int) -> str:
        """Add the response's HTML; note it when the status is not ``status``."""
        html = response.content.decode(response.charset or "utf-8")
        if response.status_code != status:
            self.problems.append(f"{source} answered {response.status_code}, not {status}")
        content_type = response.get("Content-Type", "")
        if not content_type.startswith("text/html"):
            self.problems.append(f"{source} is {content_type!r}, not text/html")
            return html
        self.add(name, source, html)
        return html

    def write(self) -> list[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for document in self.documents.values():
            path = self.folder / document.name
            path.write_text(document.html, encoding="utf-8")
            paths.append(path)
        return paths


def fetch(client: Client, language: str) -> Callable[..., Any]:
    def get(path: str, **extra: Any) -> Any:
        return client.get(path, HTTP_ACCEPT_LANGUAGE=language, **extra)

    return get


def crawl(client: Client, collector: Collector, seeds: list[str], language: str) -> list[str]:
    """GET each seed and every on-site page it links to, in turn (patient
    pages only); submit the guide's own forms (its "Did this solve it?"
    buttons) and keep the pages they lead to. Returns the paths visited."""
    get = fetch(client, language)
    queue, visited, posted = list(seeds), list[str](), set[str]()
    while queue and len(visited) < MAX_PAGES:
        path = queue.pop(0)
        if path in visited:
            continue
        visited.append(path)
        source = f"GET {path} ({language})"
        response = get(path)
        if response.status_code in (301, 302, 303, 307, 308):
            queue.append(response["Location"])
            continue
        html = collector.add_response(f"page-{language}-{path}", source, response, status=200)
        base = f"http://testserver{path}"
        queue.extend(p for p in page_links(html, base) if not NOT_FOLLOWED.search(p) and p not in visited)
        for form in page_forms(html, base):
            if form.method != "post" or not form.action.startswith("/help/") or form.action in posted:
                continue
            posted.add(form.action)
            for name, value in form.buttons:
                data = {**form.hidden, **({name: value} if name else {})}
                answer = client.post(form.action, data, HTTP_ACCEPT_LANGUAGE=language, follow=True)
                collector.add_response(
                    f"page-{language}-{form.action}-{value}",
                    f"POST {form.action} {data} from {path} ({language})",
                    answer,
                    status=200,
                )
    if queue:
        collector.problems.append(f"the crawl stopped after {MAX_PAGES} pages ({language})")
    return visited


def collect_pages(client: Client, collector: Collector, settings: Any) -> list[str]:
    """Every patient page, in each language; returns the paths crawled."""
    status_paths = {
        (step, language): ResetRequestFactory.create(language=language, **traits).get_status_url()
        for step, traits in STATUS_TRAITS.items()
        for language in LANGUAGES
    }
    resolver = get_resolver()
    visited = []
    for language in LANGUAGES:
        seeds = ["/", "/reset/", "/reset/submitted/K7QM-3XTD/"]
        seeds += [path for (_step, lang), path in status_paths.items() if lang == language]
        visited += crawl(client, collector, seeds, language)

        def keep(name: str, what: str, response: Any, status: int = 200, *, language: str = language) -> None:
            collector.add_response(f"page-{language}-{name}", f"{what} ({language})", response, status=status)

        def post(data: dict[str, str], *, language: str = language, **extra: Any) -> Any:
            return client.post("/reset/", data, HTTP_ACCEPT_LANGUAGE=language, **extra)

        keep("reset-errors", "POST /reset/ empty", post({"first_name": ""}))
        family = {"family-TOTAL_FORMS": "1", "family-INITIAL_FORMS": "0", "family-MIN_NUM_FORMS": "0",
                  "family-MAX_NUM_FORMS": "5", "family-0-first_name": "Ilsabet"}  # fmt: skip
        keep("reset-family-error", "POST /reset/ with a family member's error", post({**valid_form_data(), **family}))
        early = post(valid_form_data(appointment_date=practice_today().isoformat()))
        keep("too-early", "POST /reset/ for a visit today", early)
        if "requests_app/too_early.html" not in {t.name for t in early.templates}:
            collector.problems.append(f"POST /reset/ for a visit today ({language}) did not show too_early.html")

        # One address, one stored request an hour: its second is refused.
        settings.SUBMIT_RATE_PER_ADDRESS = "1/h"
        address = f"203.0.113.{10 + LANGUAGES.index(language)}"
        post(valid_form_data(email=f"first-{language}@example.com"), REMOTE_ADDR=address)
        limited = post(valid_form_data(email=f"second-{language}@example.com"), REMOTE_ADDR=address)
        keep("429", "the second POST /reset/ in an hour from one address", limited, 429)
        settings.SUBMIT_RATE_PER_ADDRESS = "1000/h"

        keep(
            "404",
            "GET /status/not-a-real-token/",
            client.get("/status/not-a-real-token/", HTTP_ACCEPT_LANGUAGE=language),
            404,
        )
        refused = client.post("/help/no-such-step/feedback/", {"answer": "maybe"}, HTTP_ACCEPT_LANGUAGE=language)
        keep("help-bad-feedback", "POST /help/no-such-step/feedback/ answer=maybe", refused, 400)
        # The error pages no link leads to, from the app's own handlers.
        request = RequestFactory().get("/", HTTP_ACCEPT_LANGUAGE=language)
        handler: Any = resolver.resolve_error_handler
        keep("400", "the 400 page", handler(400)(request, SuspiciousOperation()), 400)
        keep("403", "the 403 page", handler(403)(request, PermissionDenied()), 403)
        keep("500", "the 500 page", handler(500)(request), 500)
    return visited


def collect_emails(collector: Collector) -> None:
    traits = {OutboundEmail.Kind.RESOLVED: {"resolved": True}, OutboundEmail.Kind.CLOSED: {"closed": True}}
    for language in LANGUAGES:
        for kind in PATIENT_EMAILS:
            reset = ResetRequestFactory.create(language=language, **traits.get(kind, {}))
            outbound = OutboundEmailFactory.create(kind=kind, reset=reset)
            message = build_message(outbound)
            html = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
            if len(html) != 1:
                collector.problems.append(f"the {kind} email ({language}) has {len(html)} HTML parts, not one")
                continue
            collector.add(f"email-{language}-{kind}", f"the {kind} email's HTML part ({language})", str(html[0]))


def describe(messages: list[NuMessage], documents: dict[str, Document]) -> str:
    lines = []
    by_file: dict[str, list[NuMessage]] = {}
    for message in messages:
        by_file.setdefault(message.file, []).append(message)
    for name, found in by_file.items():
        document = documents.get(name)
        lines.append(f"{name} — {document.source if document else '?'}: {len(found)} error(s)")
        lines.extend(f"  {m}" for m in found)
    return "\n".join(lines)


@pytest.mark.django_db
def test_every_patient_page_and_email_is_valid_html(
    client: Client, settings: Any, nu_checker: NuChecker, tmp_path: Path
) -> None:
    settings.SUBMIT_RATE_PER_ADDRESS = "1000/h"
    collector = Collector(tmp_path / "html")
    visited = collect_pages(client, collector, settings)
    collect_emails(collector)
    files = collector.write()

    messages = nu_checker.check(files)

    steps = sorted({p for p in visited if p.startswith("/help/")})
    summary = f"{len(files)} documents checked ({len(steps)} /help/ pages reached from /), in {tmp_path / 'html'}"
    assert steps, f"no link from / leads into the guide's steps under /help/ ({summary})"
    failures = []
    if collector.problems:
        failures.append("Not as expected:\n" + "\n".join(f"  {p}" for p in collector.problems))
    if messages:
        failures.append(
            f"The Nu HTML checker found {len(messages)} error(s):\n" + describe(messages, collector.documents)
        )
    assert not failures, "\n\n".join(failures) + f"\n\n{summary}"
