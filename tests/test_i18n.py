"""English and Spanish: every patient page and every patient email in the
patient's language — the browser's, or the one picked on the switch — while
staff pages and staff emails stay English; and a catalog with nothing left
untranslated and nothing the code says missing from it."""

from __future__ import annotations

import email
import email.policy
import gettext
import io
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.conf import settings as django_settings
from django.core import mail
from django.utils import translation
from django.utils.translation.reloader import translation_file_changed

from requests_app import services
from requests_app.models import RequestEvent, ResetRequest

from .conftest import valid_form_data

ROOT = Path(__file__).resolve().parent.parent
PO_FILE = ROOT / "locale" / "es" / "LC_MESSAGES" / "django.po"
SPANISH = {"HTTP_ACCEPT_LANGUAGE": "es"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}
PATIENT = "maria.lopez@example.com"
NEW_YORK = ZoneInfo("America/New_York")
GUIDE_IN_ENGLISH = "Can\N{RIGHT SINGLE QUOTATION MARK}t get into your patient portal?"
# As `make messages` runs it: the app's patient strings only (staff pages stay
# English; tests are not shipped).
MAKEMESSAGES = [
    *("manage.py", "makemessages", "--locale=es", "--no-obsolete"),
    *("--ignore=.venv", "--ignore=node_modules", "--ignore=var", "--ignore=tests", "--ignore=templates/admin"),
]


def read_catalog(po: Path | str) -> Catalog:
    """A .po file (a path, or its text) as Babel reads it for pybabel."""
    content = po.read_bytes() if isinstance(po, Path) else po.encode()
    return read_po(io.BytesIO(content))


def compiled(catalog: Catalog) -> bytes:
    """The .mo that ``pybabel compile`` writes for ``catalog``."""
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


@pytest.fixture(scope="module", autouse=True)
def _compiled_catalogs() -> None:
    """The .mo files are build output (``make`` compiles them with pybabel);
    compile them here too, so that a bare ``pytest`` on a fresh clone tests
    the same."""
    for po in PO_FILE.parent.parent.parent.glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            partial = mo.with_suffix(".mo.partial")
            partial.write_bytes(compiled(read_catalog(po)))
            partial.replace(mo)
            translation_file_changed(sender=None, file_path=mo)


def assert_in_spanish(response: Any, *phrases: str) -> str:
    html = response.content.decode()
    assert '<html lang="es">' in html
    for phrase in phrases:
        assert phrase in html
    # The switch back to English, named in English.
    assert re.search(r'<a [^>]*href="\?lang=en"[^>]*lang="en"[^>]*>English</a>', html)
    assert response["Content-Language"] == "es"
    return html


def assert_in_english(response: Any, *phrases: str) -> str:
    html = response.content.decode()
    assert '<html lang="en">' in html
    for phrase in phrases:
        assert phrase in html
    assert re.search(r'<a [^>]*href="\?lang=es"[^>]*lang="es"[^>]*>Español</a>', html)
    return html


# --- Every patient page, chosen by the browser's language ------------------------


def test_it_shows_the_guide_in_spanish(client):
    response = client.get("/", **SPANISH)

    assert response.status_code == 200
    assert_in_spanish(response, "¿No puede entrar a su portal del paciente?", "Patient Fusion")


def test_it_shows_the_guide_in_english_to_an_english_browser(client):
    response = client.get("/", **ENGLISH)

    assert_in_english(response, GUIDE_IN_ENGLISH)


def test_it_shows_the_guide_in_english_when_the_browser_names_no_language_we_have(client):
    response = client.get("/", HTTP_ACCEPT_LANGUAGE="de-DE,fr;q=0.8")

    assert_in_english(response, GUIDE_IN_ENGLISH)


def visit_date_step(client: Any, **headers: str) -> Any:
    """The form's first question answered: a visit past the 48 hours."""
    return client.post("/reset/", {"appointment_date": valid_form_data()["appointment_date"]}, **headers)


def test_it_asks_the_first_question_of_the_form_in_spanish(client):
    response = client.get("/reset/", **SPANISH)

    assert response.status_code == 200
    assert_in_spanish(response, "¿Cuándo fue su consulta?", "Mes", "Día", "Año", "Continuar")


@pytest.mark.django_db
def test_it_shows_the_rest_of_the_form_in_spanish_with_the_reasons_in_spanish(client):
    response = visit_date_step(client, **SPANISH)

    assert response.status_code == 200
    assert_in_spanish(
        response,
        "Pídanos que restablezcamos su acceso al portal",
        "Fecha de nacimiento",
        "El enlace de invitación venció",
        "Nunca recibí el correo de invitación",
        "Enviar mi solicitud",
    )


@pytest.mark.django_db
def test_it_serves_each_language_its_own_copy_of_the_empty_form(client):
    # The empty rest of the form is rendered once per language and process, then reused.
    spanish_first = visit_date_step(client, **SPANISH).content.decode()
    english = visit_date_step(client, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    spanish_again = visit_date_step(client, **SPANISH).content.decode()

    assert "Fecha de nacimiento" in spanish_first and "Fecha de nacimiento" in spanish_again
    assert "Date of birth" in english and "Fecha de nacimiento" not in english
    assert "Familiar 1" in spanish_again and "Family member 1" in english


@pytest.mark.django_db
def test_it_shows_the_form_errors_in_spanish(client):
    data = {"appointment_date": valid_form_data()["appointment_date"], "email": "not an address"}
    response = client.post("/reset/", data, **SPANISH)

    assert response.status_code == 200
    assert_in_spanish(
        response,
        "Por favor, corrija lo siguiente:",
        "Escriba su nombre",
        "Escriba una dirección de correo electrónico con el formato correcto, como nombre@ejemplo.com",
    )
    assert ResetRequest.objects.count() == 0


@pytest.mark.django_db
def test_it_shows_the_too_early_page_in_spanish_with_a_spanish_date(client):
    with time_machine.travel(datetime(2026, 3, 12, 15, 0, tzinfo=NEW_YORK), tick=False):
        response = client.post("/reset/", valid_form_data(appointment_date="2026-03-12"), **SPANISH)

    assert response.status_code == 200
    assert_in_spanish(response, "Es posible que su enlace de invitación todavía esté en camino", "sábado 14 de marzo")
    assert ResetRequest.objects.count() == 0


@pytest.mark.django_db
def test_it_shows_the_confirmation_in_spanish(client, submit):
    response = submit(valid_form_data(), **SPANISH)

    page = client.get(response["Location"], **SPANISH)

    assert page.status_code == 200
    html = assert_in_spanish(page, "Gracias: recibimos su solicitud", "Su número de referencia")
    assert ResetRequest.objects.get().reference in html


@pytest.mark.django_db
def test_it_shows_the_same_spanish_confirmation_to_everyone_but_the_reference(client, submit):
    first = submit(valid_form_data(), **SPANISH)
    second = submit(valid_form_data(email="other.patient@example.com", first_name="Ana"), **SPANISH)

    pages = []
    for response in (first, second):
        reference = response["Location"].rstrip("/").rsplit("/", 1)[1]
        html = client.get(response["Location"], **SPANISH).content.decode()
        pages.append(html.replace(reference, "REFERENCE"))

    assert pages[0] == pages[1]
    # The language switch is a link, not a form: no per-visitor token.
    assert "csrfmiddlewaretoken" not in pages[0]


@pytest.mark.django_db
def test_it_shows_the_status_page_in_spanish_with_spanish_dates(client, submit):
    with time_machine.travel(datetime(2026, 3, 14, 9, 30, tzinfo=NEW_YORK), tick=False):
        submit(valid_form_data(appointment_date="2026-03-09"), **SPANISH)
    request = ResetRequest.objects.get()

    response = client.get(request.get_status_url(), **SPANISH)

    assert response.status_code == 200
    assert_in_spanish(response, "Su solicitud de acceso al portal", "Recibida", "14 de marzo de 2026, 9:30")


@pytest.mark.django_db
def test_it_shows_the_rate_limit_page_in_spanish(client, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "1/h"
    client.post("/reset/", {}, **SPANISH)

    response = client.post("/reset/", {}, **SPANISH)

    assert response.status_code == 429
    assert_in_spanish(response, "Por favor, espere un poco")


@pytest.mark.django_db
def test_it_shows_the_not_found_page_in_spanish(client):
    response = client.get("/no-such-page/", **SPANISH)

    assert response.status_code == 404
    assert_in_spanish(response, "Página no encontrada", "Ir a los pasos de ayuda del portal")


@pytest.mark.django_db
def test_it_shows_a_wrong_status_link_in_spanish(client):
    response = client.get("/status/ABCD2345notarealsecretnotarealsecret/", **SPANISH)

    assert response.status_code == 404
    assert_in_spanish(response, "Página no encontrada")


# --- The switch ----------------------------------------------------------------------


def test_it_switches_to_spanish_and_stays_there(client):
    switched = client.get("/reset/?lang=es", **ENGLISH)

    assert switched.status_code == 303
    assert switched["Location"] == "/reset/"
    # Kept: the next pages are Spanish although the browser asks for English.
    assert_in_spanish(client.get("/reset/", **ENGLISH), "¿Cuándo fue su consulta?", "Continuar")
    assert_in_spanish(client.get("/", **ENGLISH), "¿No puede entrar a su portal del paciente?")


def test_it_switches_back_to_english(client):
    client.get("/?lang=es")

    switched = client.get("/?lang=en", **SPANISH)

    assert switched.status_code == 303
    assert switched["Location"] == "/"
    assert_in_english(client.get("/", **SPANISH), GUIDE_IN_ENGLISH)


def test_it_keeps_the_choice_in_the_language_cookie_for_a_long_time(client):
    switched = client.get("/?lang=es")

    cookie = switched.cookies[django_settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "es"
    assert int(cookie["max-age"]) >= 30 * 24 * 3600
    assert cookie["samesite"] == "Lax"


def test_it_tells_caches_that_the_language_follows_the_browser_and_the_cookie(client):
    response = client.get("/")

    vary = {value.strip().lower() for value in response["Vary"].split(",")}
    assert {"accept-language", "cookie"} <= vary


def test_it_keeps_the_other_query_parameters_when_switching(client):
    switched = client.get("/reset/?utm_source=flyer&lang=es")

    assert switched["Location"] == "/reset/?utm_source=flyer"


def test_it_ignores_a_language_it_does_not_have(client):
    switched = client.get("/?lang=xx", **ENGLISH)

    assert switched.status_code == 303
    assert django_settings.LANGUAGE_COOKIE_NAME not in switched.cookies
    assert_in_english(client.get("/", **ENGLISH), GUIDE_IN_ENGLISH)


@pytest.mark.parametrize("path", ["//evil.example/", "/\\evil.example/", "///evil.example/"])
def test_it_never_switches_into_a_redirect_to_another_site(client, path):
    # The raw path, as a client could send it (the test client would parse
    # "//evil.example/" as a host).
    switched = client.get("/", PATH_INFO=path, QUERY_STRING="lang=es")

    assert switched.status_code == 303
    assert switched["Location"] == "/"


@pytest.mark.django_db
def test_it_offers_the_switch_on_a_status_page_without_repeating_its_secret(client, submit):
    submit(valid_form_data())
    request = ResetRequest.objects.get()

    html = client.get(request.get_status_url(), **ENGLISH).content.decode()

    # A link relative to the page itself: the token stays where it already is.
    assert 'href="?lang=es"' in html
    switched = client.get(request.get_status_url() + "?lang=es")
    assert switched["Location"] == request.get_status_url()


# --- Patient emails in the patient's language; staff emails in English ---------------


def sent(message: Any) -> email.message.EmailMessage:
    return email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def parts(message: Any) -> tuple[str, str, str]:
    parsed = sent(message)
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    # A folded non-ASCII subject reads back with the fold's space in front.
    return str(parsed["Subject"]).strip(), text, html


def to_patient(kind_subject_start: str) -> Any:
    [message] = [m for m in mail.outbox if m.to == [PATIENT] and m.subject.startswith(kind_subject_start)]
    return message


@pytest.fixture
def filed_in_spanish(submit: Any) -> ResetRequest:
    response = submit(valid_form_data(), **SPANISH)
    assert response.status_code == 303
    return ResetRequest.objects.get()


@pytest.mark.django_db
def test_it_remembers_the_language_a_request_was_filed_in(filed_in_spanish):
    assert filed_in_spanish.language == "es"


@pytest.mark.django_db
def test_it_files_a_request_in_english_by_default(submit):
    submit(valid_form_data(), **ENGLISH)

    assert ResetRequest.objects.get().language == "en"


@pytest.mark.django_db
def test_it_sends_the_acknowledgment_in_spanish(filed_in_spanish):
    message = to_patient("IFM: recibimos")

    subject, text, html = parts(message)
    assert subject == f"IFM: recibimos su solicitud de acceso al portal ({filed_in_spanish.reference})"
    assert "Hola, Maria:" in text
    assert "QUÉ SIGUE AHORA" in text
    assert "Spam o Correo no deseado" in text
    assert '<html lang="es">' in html
    assert "Consultar el estado de su solicitud" in html
    assert sent(message)["Content-Language"] == "es"


@pytest.mark.django_db
def test_it_sends_the_staff_notification_in_english_for_a_spanish_request(filed_in_spanish, settings):
    [message] = [m for m in mail.outbox if m.to == [settings.STAFF_NOTIFY_EMAIL]]

    subject, text, html = parts(message)
    assert subject == f"New portal reset request {filed_in_spanish.reference}: The invitation link expired"
    assert "A new portal access reset request is waiting." in text
    assert '<html lang="en">' in html


def staff_works_on(request: ResetRequest, staff_user: Any) -> None:
    services.reset_start(reset_id=request.pk, actor=staff_user)
    services.reset_record_identity_check(reset_id=request.pk, actor=staff_user, dob=True, phone=True, email=False)


@pytest.mark.django_db
def test_it_sends_the_resolution_in_spanish_whatever_language_staff_use(
    filed_in_spanish, staff_user, django_capture_on_commit_callbacks
):
    staff_works_on(filed_in_spanish, staff_user)
    # Staff work in English (the admin); the patient's email does not.
    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        services.reset_resolve(reset_id=filed_in_spanish.pk, actor=staff_user, outcome="reinvited")

    subject, text, html = parts(to_patient("IFM: restablecimos"))
    assert subject == f"IFM: restablecimos su acceso al portal ({filed_in_spanish.reference})"
    assert "Buenas noticias: restablecimos su acceso al portal del paciente" in text
    assert "QUÉ HACER AHORA" in text
    assert '<html lang="es">' in html
    assert "Iniciar sesión en Patient Fusion" in html


@pytest.mark.django_db
def test_it_sends_the_completion_for_a_patient_who_got_in_alone_in_spanish(
    filed_in_spanish, staff_user, django_capture_on_commit_callbacks
):
    staff_works_on(filed_in_spanish, staff_user)
    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        services.reset_resolve(reset_id=filed_in_spanish.pk, actor=staff_user, outcome="self_service")

    subject, text, html = parts(to_patient("IFM: su solicitud"))
    assert subject == f"IFM: su solicitud de acceso al portal está completada ({filed_in_spanish.reference})"
    assert "Nos alegra que haya podido entrar" in text
    assert "Nos alegra que haya podido entrar" in html


@pytest.mark.django_db
def test_it_sends_the_closure_in_spanish(filed_in_spanish, staff_user, django_capture_on_commit_callbacks):
    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        services.reset_close(reset_id=filed_in_spanish.pk, actor=staff_user, reason="unverified")

    subject, text, html = parts(to_patient("IFM: cerramos"))
    assert subject == f"IFM: cerramos su solicitud de acceso al portal {filed_in_spanish.reference}"
    assert "No pudimos confirmar su identidad" in text
    assert '<html lang="es">' in html
    assert "Con gusto le ayudaremos." in html


@pytest.mark.django_db
def test_it_writes_an_english_request_s_emails_in_english_even_from_a_spanish_context(
    submit, staff_user, django_capture_on_commit_callbacks
):
    submit(valid_form_data(), **ENGLISH)
    request = ResetRequest.objects.get()
    mail.outbox.clear()

    with translation.override("es"), django_capture_on_commit_callbacks(execute=True):
        services.reset_resend_acknowledgment(reset_id=request.pk, actor=staff_user)

    _, text, html = parts(to_patient("IFM: we received"))
    assert "WHAT HAPPENS NEXT" in text
    assert '<html lang="en">' in html


@pytest.mark.django_db
def test_it_keeps_a_request_in_the_language_it_was_filed_in_whatever_a_repeat_uses(submit):
    # Whoever else knows the patient's email and date of birth cannot switch
    # the patient's emails to another language.
    submit(valid_form_data(), **ENGLISH)
    mail.outbox.clear()

    submit(valid_form_data(), **SPANISH)

    request = ResetRequest.objects.get()
    assert request.language == "en"
    assert to_patient("IFM: we received")
    # Staff read what the repeat said in English.
    duplicate = request.events.get(kind=RequestEvent.Kind.DUPLICATE)
    assert "Reason: The invitation link expired" in duplicate.message


# --- Staff pages stay English ------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_the_admin_in_english_for_a_spanish_browser(staff_client, filed_in_spanish):
    staff_client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "es"

    response = staff_client.get("/admin/requests_app/resetrequest/", **SPANISH)

    html = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="en"' in html
    assert response["Content-Language"] == "en"
    assert "The invitation link expired" in html
    assert "El enlace de invitación venció" not in html
    assert "Buscar" not in html  # Django's own Spanish for the search button


@pytest.mark.django_db
def test_it_keeps_the_admin_login_in_english_for_a_spanish_browser(client):
    response = client.get("/admin/login/", **SPANISH)

    html = response.content.decode()
    assert '<html lang="en"' in html
    assert "Iniciar sesión" not in html


@pytest.mark.django_db
def test_it_does_not_take_the_switch_parameter_on_staff_pages(staff_client):
    response = staff_client.get("/admin/?lang=es")

    assert response.status_code == 200
    assert django_settings.LANGUAGE_COOKIE_NAME not in response.cookies


# --- The catalog ---------------------------------------------------------------------


def entry_key(message: Message) -> tuple[str | None, Any]:
    # Babel's id is the msgid, or (msgid, msgid_plural) for a plural entry.
    return (message.context, message.id)


def translations(message: Message) -> tuple[str, ...]:
    """The msgstr, or one per plural form (Babel fills in missing forms as "")."""
    return tuple(message.string) if message.pluralizable else (message.string,)


def is_translated(message: Message) -> bool:
    return all(translations(message))


def messages(catalog: Catalog) -> list[Message]:
    """The catalog's messages: not the header (obsolete ones Babel keeps apart)."""
    return [m for m in catalog if m.id]


def test_it_leaves_no_string_untranslated_or_fuzzy():
    catalog = read_catalog(PO_FILE)
    entries = messages(catalog)

    assert len(entries) > 150
    assert [e.id for e in entries if not is_translated(e)] == []
    assert [e.id for e in entries if e.fuzzy] == []
    # A fuzzy header would make pybabel skip the whole catalog.
    assert not catalog.fuzzy
    assert list(catalog.obsolete) == []


PLACEHOLDER = re.compile(r"%\(\w+\)s")
TAG = re.compile(r"</?[a-z][a-z0-9]*")


def test_it_keeps_every_placeholder_and_tag_in_the_translations():
    catalog = read_catalog(PO_FILE)
    for entry in messages(catalog):
        source = entry.id[1] if entry.pluralizable else entry.id
        for translated in translations(entry):
            assert sorted(PLACEHOLDER.findall(translated)) == sorted(PLACEHOLDER.findall(source)), entry.id
            assert sorted(TAG.findall(translated)) == sorted(TAG.findall(source)), entry.id
    # What pybabel compile checks before it writes the .mo (and fails on).
    assert [(message.id, errors) for message, errors in catalog.check()] == []


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="makemessages needs GNU gettext's xgettext")
def test_it_has_every_string_of_the_code_in_the_catalog(tmp_path):
    """Extract the strings again, as ``make messages`` does, from a copy of
    the code: a new English string that nobody translated, or a changed one,
    fails here."""
    copy = tmp_path / "src"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", "node_modules", "var", ".git", "__pycache__", ".*_cache", "*.mo", ".hypothesis"
        ),
    )
    env = {**os.environ, "DEBUG": "1", "VAR_DIR": str(tmp_path / "var")}
    subprocess.run(
        [sys.executable, *MAKEMESSAGES],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    extracted = messages(read_catalog(copy / PO_FILE.relative_to(ROOT)))
    ours = messages(read_catalog(PO_FILE))

    missing = {entry_key(e) for e in extracted} - {entry_key(e) for e in ours}
    stale = {entry_key(e) for e in ours} - {entry_key(e) for e in extracted}
    assert not missing, "New strings: run `make messages` and translate them in locale/es/LC_MESSAGES/django.po"
    assert not stale, "Strings the code no longer has: run `make messages`"
    assert [e.id for e in extracted if not is_translated(e) or e.fuzzy] == []


def read_mo(content: bytes) -> dict[Any, str]:
    catalog = dict(gettext.GNUTranslations(io.BytesIO(content))._catalog)  # type: ignore[attr-defined]
    catalog.pop("")  # the header: msgfmt drops POT-Creation-Date, Babel adds Generated-By
    return catalog


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="compares with GNU gettext's msgfmt")
def test_it_compiles_the_catalog_as_msgfmt_does(tmp_path):
    # --check-format also proves every %(name)s is one Python can fill in.
    subprocess.run(["msgfmt", "--check-format", "-o", str(tmp_path / "gnu.mo"), str(PO_FILE)], check=True, timeout=60)

    ours = read_mo(compiled(read_catalog(PO_FILE)))

    assert ours == read_mo((tmp_path / "gnu.mo").read_bytes())


def test_it_compiles_without_django_settings_or_gnu_gettext(tmp_path, settings):
    """The image build's own command (the Dockerfile's RUN pybabel line), run
    as the build runs it: no settings, no environment, no msgfmt on PATH; and
    Django then serves Spanish from what it wrote."""
    [command] = re.findall(r"^RUN (pybabel compile .*)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    shutil.copytree(ROOT / "locale", tmp_path / "locale", ignore=shutil.ignore_patterns("*.mo"))
    program, *args = command.split()

    subprocess.run(
        [str(Path(sys.executable).parent / program), *args],
        cwd=tmp_path,
        env={"PATH": "/nonexistent"},
        check=True,
        capture_output=True,
        timeout=60,
    )

    assert (tmp_path / "locale" / "es" / "LC_MESSAGES" / "django.mo").exists()
    settings.LOCALE_PATHS = [tmp_path / "locale"]  # Django drops its loaded catalogs
    with translation.override("es"):
        assert translation.gettext("Send my request") == "Enviar mi solicitud"
        assert (
            translation.pgettext(
                "Date format: dates on the request status page, e.g. March 14, 2026, 9:30 AM", "F j, Y, g:i A"
            )
            == "j \\d\\e F \\d\\e Y, g:i a"
        )


MAKE_MO = "locale/es/LC_MESSAGES/django.mo"


def make_mo(workdir: Path) -> subprocess.CompletedProcess[str]:
    """``make`` the Spanish .mo in ``workdir`` (a copy of the Makefile and the
    catalogs) with this checkout's venv, as ``make run``/``make test`` do."""
    venv = Path(sys.executable).parent.parent
    return subprocess.run(
        # -o: the venv is installed already; never reinstall it from here.
        ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", MAKE_MO],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def make_workdir(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "locale", tmp_path / "locale", ignore=shutil.ignore_patterns("*.mo", "*.partial"))
    return tmp_path


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_compiles_each_catalog_again_only_when_its_po_changed(make_workdir):
    po = make_workdir / "locale" / "es" / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")

    first = make_mo(make_workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert read_mo(mo.read_bytes()) == read_mo(compiled(read_catalog(PO_FILE)))

    unchanged = make_mo(make_workdir)
    assert unchanged.returncode == 0 and "pybabel" not in unchanged.stdout

    po.write_text(
        po.read_text(encoding="utf-8").replace('msgstr "Enviar mi solicitud"', 'msgstr "Enviar la solicitud"'),
        encoding="utf-8",
    )
    os.utime(po, (mo.stat().st_mtime + 10, mo.stat().st_mtime + 10))
    changed = make_mo(make_workdir)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert gettext.GNUTranslations(io.BytesIO(mo.read_bytes())).gettext("Send my request") == "Enviar la solicitud"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_fails_on_a_broken_placeholder_and_keeps_the_previous_catalog(make_workdir):
    po = make_workdir / "locale" / "es" / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    assert make_mo(make_workdir).returncode == 0
    previous = mo.read_bytes()

    text = po.read_text(encoding="utf-8")
    assert 'msgstr "Solicitud %(reference)s"' in text
    po.write_text(
        text.replace('msgstr "Solicitud %(reference)s"', 'msgstr "Solicitud %(referencia)s"'), encoding="utf-8"
    )
    os.utime(po, (mo.stat().st_mtime + 10, mo.stat().st_mtime + 10))
    broken = make_mo(make_workdir)

    assert broken.returncode != 0
    assert "referencia" in broken.stderr
    assert mo.read_bytes() == previous
