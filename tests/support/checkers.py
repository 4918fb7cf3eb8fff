"""Lighthouse and the Nu HTML checker, for the patient pages and emails.

Both come from npm (package.json: ``lighthouse``, ``vnu-jar``; ``make test``
runs ``npm ci``). Lighthouse drives Debian's Chromium (``/usr/bin/chromium``,
given as ``CHROME_PATH``); the Nu checker is a Java program and runs on the
machine's Java (Debian's ``default-jre-headless``; .ci/run installs it). A
test that needs a missing one skips, saying how to get it, or fails when
``REQUIRE_SERVICES=1`` (CI).

Fixtures, for a module with ``pytest_plugins = ["tests.support.checkers"]``:

- ``lighthouse``: ``Lighthouse.run(pages)`` audits a batch of URLs in one
  Chromium and returns each page's JSON report (also kept under
  ``var/lighthouse/``); ``failing_audits`` says what cost a category points;
- ``nu_checker``: ``NuChecker.check(files)`` validates a batch of HTML files
  in one ``java -jar vnu.jar --errors-only`` run and returns the errors;
- ``patient_site``: the app served by gunicorn as production runs it
  (``gunicorn.conf.py``, DEBUG off, whitenoise serving the collected,
  compressed static files, the real security headers) on SQLite, with one
  reset request filed (tests/factories.py) for its status page.

Lighthouse's Performance score is not asserted by any test (on two shared
cores it is noise); it is measured by hand, on a quiet machine, with

    .venv/bin/python -m tests.support.checkers lighthouse-performance

which serves the app the same way, audits the same pages for Performance
only (mobile, Lighthouse's default) three times each and prints the median
score with its FCP, LCP, TBT and CLS (docs/development.md, "Checkers").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from . import REPO
from .http_client import Browser as HttpClient
from .processes import serving_gunicorn, sqlite_site_env
from .requirements import service_missing

CHROMIUM = Path("/usr/bin/chromium")
NODE_MODULES = REPO / "node_modules"
VNU_JAR = NODE_MODULES / "vnu-jar" / "build" / "dist" / "vnu.jar"
LIGHTHOUSE_REPORTS = REPO / "var" / "lighthouse"
T = TypeVar("T")

# Headless Chromium as root in a container, with nothing of its own going
# on (updates, sync, first-run pages) to disturb a measurement.
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync"
)
# What the suite asserts; Performance is measured apart (see above).
ASSERTED_CATEGORIES = ("accessibility", "best-practices", "seo")


def _npm_hint() -> str:
    return "run `npm ci` in the checkout" if shutil.which("npm") else "install Node.js and npm, then `npm ci`"


# --- Finding the tools: each returns it, or raises LookupError saying why not ---


def find_chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        raise LookupError(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


def find_lighthouse() -> str:
    """node, with node_modules/lighthouse (and the chrome-launcher it brings)."""
    node = shutil.which("node")
    if node is None:
        raise LookupError("node is not on PATH (install Node.js, then `npm ci`)")
    for package in ("lighthouse", "chrome-launcher"):
        if not (NODE_MODULES / package / "package.json").is_file():
            raise LookupError(f"node_modules/{package} is missing ({_npm_hint()})")
    return node


def find_nu_checker() -> tuple[str, Path]:
    """java and node_modules/vnu-jar's vnu.jar."""
    java = shutil.which("java")
    if java is None:
        raise LookupError("java is not on PATH (apt-get install default-jre-headless)")
    if not VNU_JAR.is_file():
        raise LookupError(f"{VNU_JAR.relative_to(REPO)} is missing ({_npm_hint()})")
    return java, VNU_JAR


def _required(name: str, find: Callable[[], T]) -> T:
    """What ``find`` finds; else skip the test, or fail it under
    REQUIRE_SERVICES=1, saying why."""
    try:
        return find()
    except LookupError as exc:
        why = str(exc)
    service_missing(name, why)


# --- Lighthouse ---------------------------------------------------------------

# Lighthouse's Node API, called as its CLI calls it, over a batch of pages:
# one node process and one Chromium for them all (a CLI run per page starts
# both again: about 6 s a page more here). The settings are those of
# ``CHROME_PATH=… lighthouse <url> --only-categories=… --output=json --quiet
# --chrome-flags="…"``: the mobile form factor with simulated throttling
# (Lighthouse's defaults), the origin's storage cleared before each page.
# The full-page screenshot is left out of the reports: no audit uses it and
# it costs a second a page. Each report, or the error, goes to its file.
_BATCH_SCRIPT = r"""
import fs from "node:fs";
import lighthouse from "lighthouse";
import * as chromeLauncher from "chrome-launcher";

const jobs = JSON.parse(process.env.LIGHTHOUSE_JOBS);
// Chromium now and then records a page load's trace without its start
// (Lighthouse's NO_NAVSTART, "please run Lighthouse again"), more often on
// a busy machine: that page is audited again, up to twice.
const RETRIED = ["NO_NAVSTART"];
const RETRIES = 2;
const chrome = await chromeLauncher.launch({
  chromePath: process.env.CHROME_PATH,
  chromeFlags: jobs.chromeFlags,
  userDataDir: jobs.profile,
});
try {
  for (const page of jobs.pages) {
    const started = Date.now();
    for (let attempt = 1; attempt <= RETRIES + 1; attempt++) {
      try {
        const result = await lighthouse(page.url, {
          port: chrome.port,
          output: "json",
          logLevel: "error",
          onlyCategories: jobs.categories,
          disableFullPageScreenshot: true,
        });
        fs.writeFileSync(page.out, result.report);
        const code = result.lhr.runtimeError && result.lhr.runtimeError.code;
        if (!RETRIED.includes(code)) break;
        console.log(`${page.url}: ${code}, attempt ${attempt}`);
      } catch (error) {
        fs.writeFileSync(page.out, JSON.stringify({batchError: String((error && error.stack) || error)}));
        break;
      }
    }
    console.log(`${page.url} ${Date.now() - started} ms`);
  }
} finally {
  await chrome.kill();
}
"""


@dataclass
class Lighthouse:
    """Lighthouse (node_modules) on Debian's Chromium."""

    node: str
    chromium: Path
    reports: Path = LIGHTHOUSE_REPORTS

    def run(
        self,
        pages: dict[str, str],
        *,
        categories: Sequence[str] = ASSERTED_CATEGORIES,
        timeout_per_page: float = 60,
    ) -> dict[str, dict[str, Any]]:
        """Audit each URL of ``pages`` (name -> URL), mobile, in one Chromium;
        return name -> report, each also written to ``<reports>/<name>.json``.
        Fails with Lighthouse's own error for a page it could not audit."""
        self.reports.mkdir(parents=True, exist_ok=True)
        outs = {name: self.reports / f"{name}.json" for name in pages}
        for out in outs.values():
            out.unlink(missing_ok=True)
        timeout = 30 + timeout_per_page * len(pages)
        with tempfile.TemporaryDirectory(prefix="lighthouse-chromium-") as profile:
            jobs = {
                "chromeFlags": CHROME_FLAGS.split(),
                "categories": list(categories),
                "profile": profile,
                "pages": [{"url": url, "out": str(outs[name])} for name, url in pages.items()],
            }
            env = {**os.environ, "CHROME_PATH": str(self.chromium), "LIGHTHOUSE_JOBS": json.dumps(jobs)}
            try:
                result = subprocess.run(
                    [self.node, "--input-type=module", "--eval", _BATCH_SCRIPT],
                    cwd=REPO,  # where `import "lighthouse"` finds node_modules
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                # On a timeout the output comes as bytes, whatever text= said.
                done = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
                raise AssertionError(f"Lighthouse took longer than {timeout:g}s; pages done:\n{done}") from None
        reports = {}
        for name, url in pages.items():
            if not outs[name].is_file():
                raise AssertionError(
                    f"Lighthouse wrote no report for {url} (exit status {result.returncode})\n"
                    f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
                )
            report: dict[str, Any] = json.loads(outs[name].read_text())
            if "batchError" in report:
                raise AssertionError(f"Lighthouse failed on {url}:\n{report['batchError']}")
            if report.get("runtimeError"):
                error = report["runtimeError"]
                raise AssertionError(f"Lighthouse could not audit {url}: {error.get('code')}: {error.get('message')}")
            reports[name] = report
        return reports


def score(report: dict[str, Any], category: str) -> float | None:
    """A category's score, 0 to 1 (None when Lighthouse could not tell)."""
    value = report["categories"][category].get("score")
    return None if value is None else float(value)


def failing_audits(report: dict[str, Any], category: str) -> list[str]:
    """The audits that cost ``category`` points, each with Lighthouse's
    explanation and where (up to ten items), for a failure message."""
    lines = []
    for ref in report["categories"][category]["auditRefs"]:
        if not ref.get("weight"):
            continue
        audit = report["audits"][ref["id"]]
        value = audit.get("score")
        if value is None or value >= 1:
            continue
        display = f" ({audit['displayValue']})" if audit.get("displayValue") else ""
        lines.append(f"- {audit['id']}: {audit['title']}{display} [score {value}, weight {ref['weight']}]")
        if audit.get("explanation"):
            lines.append(f"    {audit['explanation']}")
        lines.extend(f"    {item}" for item in _describe_items(audit.get("details") or {}))
    return lines


def _describe_value(value: Any) -> str:
    if isinstance(value, dict):
        if value.get("type") == "node":
            where = value.get("selector") or value.get("nodeLabel") or value.get("path") or "?"
            snippet = " ".join(str(value.get("snippet", "")).split())[:200]
            explanation = " ".join(str(value.get("explanation", "")).split())[:300]
            return f"{where}: {snippet}" + (f" — {explanation}" if explanation else "")
        if value.get("type") == "source-location":
            return f"{value.get('url')}:{value.get('line')}:{value.get('column')}"
        for key in ("url", "value", "text"):
            if key in value:
                return str(value[key])[:300]
        return json.dumps(value)[:300]
    return " ".join(str(value).split())[:300]


def _describe_items(details: dict[str, Any], limit: int = 10) -> list[str]:
    out = []
    items = details.get("items") or []
    for item in items[:limit]:
        if not isinstance(item, dict):
            out.append(_describe_value(item))
            continue
        parts = [
            f"{key}: {_describe_value(value)}"
            for key, value in item.items()
            if key != "subItems" and value not in (None, "", [], {})
        ]
        sub = item.get("subItems")
        if isinstance(sub, dict):
            for subitem in (sub.get("items") or [])[:3]:
                if isinstance(subitem, dict):
                    parts.append("; ".join(f"{k}: {_describe_value(v)}" for k, v in subitem.items() if v))
        out.append(" | ".join(parts))
    if len(items) > limit:
        out.append(f"… and {len(items) - limit} more")
    return out


@pytest.fixture(scope="session")
def lighthouse() -> Lighthouse:
    """Lighthouse from node_modules, on Debian's Chromium."""
    return Lighthouse(node=_required("Lighthouse", find_lighthouse), chromium=_required("Chromium", find_chromium))


# --- The Nu HTML checker -----------------------------------------------------------


@dataclass(frozen=True)
class NuMessage:
    file: str
    line: int | None
    column: int | None
    message: str
    extract: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")
        extract = " ".join(self.extract.split())
        return f"{where}: {self.message}" + (f"\n    near: {extract[:200]}" if extract else "")


@dataclass
class NuChecker:
    """``java -jar vnu.jar --errors-only --format json``: one JVM for a whole
    batch of files (it takes seconds to start)."""

    java: str
    jar: Path

    def check(self, files: Sequence[Path], *, timeout: float = 180) -> list[NuMessage]:
        """Every error in ``files`` (HTML documents, by their .html name);
        an empty list when all are valid."""
        if not files:
            raise ValueError("no files to check")
        args = [self.java, "-jar", str(self.jar), "--errors-only", "--format", "json", *map(str, files)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        # The report is on stderr; the exit status is 1 when it lists an error.
        try:
            payload = json.loads(result.stderr or "{}")
        except json.JSONDecodeError:
            raise AssertionError(
                f"the Nu checker exited with {result.returncode} and wrote no JSON report\n"
                f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
            ) from None
        messages = [
            NuMessage(
                file=Path(unquote(urlsplit(m.get("url", "")).path)).name or "?",
                # firstLine is left out when the message is on one line.
                line=m.get("firstLine") or m.get("lastLine"),
                column=m.get("firstColumn"),
                message=m.get("message", ""),
                extract=m.get("extract", ""),
            )
            for m in payload.get("messages", [])
            if m.get("type") in ("error", "non-document-error") or m.get("subType") == "fatal"
        ]
        if result.returncode not in (0, 1) or (result.returncode == 1 and not messages):
            raise AssertionError(f"the Nu checker exited with {result.returncode}\n{result.stderr[-4000:]}")
        return messages


@pytest.fixture(scope="session")
def nu_checker() -> NuChecker:
    """The Nu HTML checker (node_modules/vnu-jar) on the machine's Java."""
    java, jar = _required("The Nu HTML checker", find_nu_checker)
    return NuChecker(java=java, jar=jar)


# --- Links and forms on a page --------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    # (name, value) of each submit button; ("", "") for a nameless one.
    buttons: list[tuple[str, str]]
    hidden: dict[str, str]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.stylesheets: list[str] = []
        self.forms: list[Form] = []
        self._form: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        elif tag == "link" and "stylesheet" in a.get("rel", "").split() and a.get("href"):
            self.stylesheets.append(a["href"])
        elif tag == "form":
            self._form = Form(action=a.get("action", ""), method=a.get("method", "get").lower(), buttons=[], hidden={})
            self.forms.append(self._form)
        elif self._form is not None and tag in ("button", "input"):
            kind = a.get("type", "submit" if tag == "button" else "text").lower()
            if kind == "submit":
                self._form.buttons.append((a.get("name", ""), a.get("value", "")))
            elif kind == "hidden" and a.get("name"):
                self._form.hidden[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def _on_site(href: str, base: str) -> str | None:
    """``href`` as a path (with its query, without the fragment) when it
    points into ``base``'s site, else None."""
    parts = urlsplit(urljoin(base, href))
    if parts.scheme not in ("http", "https") or parts.netloc != urlsplit(base).netloc:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page_links(html: str, base: str) -> list[str]:
    """The page's links into its own site, in page order, each once."""
    parser = _PageParser()
    parser.feed(html)
    found: list[str] = []
    for href in parser.hrefs:
        path = _on_site(href, base)
        if path is not None and path not in found:
            found.append(path)
    return found


def page_forms(html: str, base: str) -> list[Form]:
    """The page's forms that post into its own site, actions made paths."""
    parser = _PageParser()
    parser.feed(html)
    forms = []
    for form in parser.forms:
        path = _on_site(form.action or base, base)
        if path is not None:
            forms.append(Form(action=path, method=form.method, buttons=form.buttons, hidden=form.hidden))
    return forms


def page_stylesheets(html: str, base: str) -> list[str]:
    """The paths of the stylesheets the page links to on its own site."""
    parser = _PageParser()
    parser.feed(html)
    return [path for href in parser.stylesheets if (path := _on_site(href, base)) is not None]


def help_links(html: str, base: str) -> list[str]:
    """The links to the guide's steps (under /help/) on a page, in order;
    the language switch (``?lang=``) is no step."""
    return [path for path in page_links(html, base) if path.startswith("/help/") and "lang=" not in path]


# --- The app, served as production serves it -------------------------------------------

# Run by ``manage.py shell`` in the site's environment: a fresh SQLite
# database, the static files collected and compressed, one request filed
# (with the factory the tests use) whose status link is printed.
SITE_SETUP = """
import json
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
from tests.factories import ResetRequestFactory
reset = ResetRequestFactory()
print("SITE=" + json.dumps({"status_path": reset.get_status_url()}))
"""


@dataclass
class PatientSite:
    url: str
    # The status page of the request the setup filed.
    status_path: str

    def get(self, path: str) -> str:
        response = HttpClient(self.url, timeout=10).get(path)
        if response.status != 200:
            raise AssertionError(f"GET {path} answered {response.status}, not 200")
        return response.text

    def assert_styled(self, path: str) -> None:
        """The page links to a stylesheet and each one it links to is served
        as CSS: Lighthouse's contrast and tap-target audits judge the page
        as styled, and an unstyled page could pass them by accident."""
        sheets = page_stylesheets(self.get(path), self.url + path)
        assert sheets, f"{path} links to no stylesheet"
        for sheet in sheets:
            response = HttpClient(self.url, timeout=10).get(sheet)
            kind = response.headers.get("Content-Type", "")
            assert response.status == 200 and kind.startswith("text/css"), (
                f"{path}: its stylesheet {sheet} answered {response.status} ({kind})"
            )


@contextlib.contextmanager
def serve_patient_site(root: Path) -> Iterator[PatientSite]:
    """gunicorn with the app's gunicorn.conf.py and production settings on a
    fresh SQLite database under ``root``, stopped on leaving."""
    env, port = sqlite_site_env(root, WEB_CONCURRENCY="2")
    setup = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "shell", "-c", SITE_SETUP],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    match = re.search(r"^SITE=(.*)$", setup.stdout, re.MULTILINE)
    if setup.returncode != 0 or not match:
        raise AssertionError(
            f"setting up the site failed (exit status {setup.returncode})\n"
            f"--- stdout ---\n{setup.stdout[-4000:]}\n--- stderr ---\n{setup.stderr[-4000:]}"
        )
    with serving_gunicorn(env=env, root=root, port=port, config=True, probe="/healthz") as url:
        yield PatientSite(url=url, status_path=json.loads(match[1])["status_path"])


@pytest.fixture(scope="module")
def patient_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatientSite]:
    """The app under gunicorn for the module, with one request filed."""
    with serve_patient_site(tmp_path_factory.mktemp("checkers-site")) as site:
        yield site


def lighthouse_pages(site: PatientSite) -> dict[str, str | None]:
    """name -> path of each page Lighthouse audits: the guide's start page,
    the step its first link into /help/ opens (None while / has none), the
    reset form and a status page."""
    steps = help_links(site.get("/"), site.url + "/")
    return {"guide": "/", "help-step": steps[0] if steps else None, "reset-form": "/reset/", "status": site.status_path}


# --- python -m tests.support.checkers lighthouse-performance ------------------------------


def measure_performance(runs: int) -> int:
    try:
        tool = Lighthouse(node=find_lighthouse(), chromium=find_chromium(), reports=LIGHTHOUSE_REPORTS / "performance")
    except LookupError as why:
        print(f"Lighthouse cannot run: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="lighthouse-site-") as tmp, serve_patient_site(Path(tmp)) as site:
        pages = {name: path for name, path in lighthouse_pages(site).items() if path is not None}
        print(f"Lighthouse {_lighthouse_version()} Performance, mobile, median of {runs} runs, on {CHROMIUM}")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in pages}
        started = time.monotonic()
        # Round-robin, so that a burst of load elsewhere does not land on one page.
        for run in range(runs):
            batch = {f"{name}-{run + 1}": site.url + path for name, path in pages.items()}
            reports = tool.run(batch, categories=["performance"])
            for name in pages:
                report = reports[f"{name}-{run + 1}"]
                audits = report["audits"]
                results[name].append(
                    {
                        "score": 100 * (score(report, "performance") or 0),
                        "fcp": audits["first-contentful-paint"]["numericValue"],
                        "lcp": audits["largest-contentful-paint"]["numericValue"],
                        "tbt": audits["total-blocking-time"]["numericValue"],
                        "cls": audits["cumulative-layout-shift"]["numericValue"],
                    }
                )
    print(f"{'page':<11} {'path':<28} {'score':>5} {'FCP':>8} {'LCP':>8} {'TBT':>6} {'CLS':>6}  each run")
    for name, path in pages.items():
        shown = path if len(path) <= 28 else path[:25] + "..."
        median = sorted(results[name], key=lambda r: r["score"])[len(results[name]) // 2]
        each = " ".join(f"{r['score']:.0f}" for r in results[name])
        print(
            f"{name:<11} {shown:<28} {median['score']:>5.0f} {median['fcp']:>6.0f}ms {median['lcp']:>6.0f}ms "
            f"{median['tbt']:>4.0f}ms {median['cls']:>6.3f}  {each}"
        )
    print(f"{time.monotonic() - started:.0f} s; reports in {tool.reports.relative_to(REPO)}/")
    return 0


def _lighthouse_version() -> str:
    return str(json.loads((NODE_MODULES / "lighthouse" / "package.json").read_text())["version"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.checkers")
    commands = parser.add_subparsers(dest="command", required=True)
    performance = commands.add_parser(
        "lighthouse-performance",
        help="Lighthouse's mobile Performance score of each page the suite audits (a measurement, not a test)",
    )
    performance.add_argument("--runs", type=int, default=3, help="runs per page; the median is shown (default 3)")
    args = parser.parse_args(argv)
    return measure_performance(max(1, args.runs))


if __name__ == "__main__":
    sys.exit(main())
