"""A browser for tests, on http.client: keeps cookies, fills a page's form
over what the page put in it (CSRF token, formset management form, hidden
fields) and sends it with the headers a browser sends."""

from __future__ import annotations

import html.parser
import http.client
import http.cookies
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class LoadedForm:
    page_url: str
    action: str
    fields: list[tuple[str, str]]


@dataclass
class _Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(html.parser.HTMLParser):
    """The forms of a page and what a browser would send from them untouched:
    hidden and text inputs with their values, checked boxes, the selected
    option of each select, textareas' contents."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._option: list[Any] | None = None
        self._textarea: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(action=a.get("action", ""), method=a.get("method", "get").lower()))
            return
        if not self.forms:
            return
        form = self.forms[-1]
        name = a.get("name")
        if tag == "input" and name and "disabled" not in a:
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    form.fields.append((name, a.get("value", "on")))
            elif kind not in ("submit", "button", "image", "reset", "file"):
                form.fields.append((name, a.get("value", "")))
        elif tag == "select" and name:
            self._select = (name, [])
        elif tag == "option" and self._select is not None:
            self._option = [a.get("value"), "selected" in a, ""]
        elif tag == "textarea" and name:
            self._textarea = [name, ""]

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None and self._select is not None:
            value, selected, label = self._option
            self._select[1].append((value if value is not None else label.strip(), selected))
            self._option = None
        elif tag == "select" and self._select is not None and self.forms:
            name, options = self._select
            chosen = next((v for v, s in options if s), options[0][0] if options else None)
            if chosen is not None:
                self.forms[-1].fields.append((name, chosen))
            self._select = None
        elif tag == "textarea" and self._textarea is not None and self.forms:
            self.forms[-1].fields.append((self._textarea[0], self._textarea[1].removeprefix("\n")))
            self._textarea = None


class Browser:
    """What a browser does, over plain HTTP with http.client: keeps cookies
    (sending Secure ones back too, as browsers do for 127.0.0.1 and
    localhost), sends Referer and Origin with a form, does not follow
    redirects on its own."""

    def __init__(self, base_url: str, *, timeout: float = 20):
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self.cookies: dict[str, http.cookies.Morsel[str]] = {}

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        url = urljoin(self.base_url + "/", path)
        parts = urlsplit(url)
        if (parts.hostname, parts.port or 80) != (self.host, self.port):
            raise ValueError(f"{url} is not on {self.base_url}")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Host": f"{self.host}:{self.port}", "User-Agent": "portal-reset-tests", "Accept": "text/html,*/*"}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={m.coded_value}" for name, m in self.cookies.items())
        sent.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=body, headers=sent)
            raw = conn.getresponse()
            data = raw.read()
        finally:
            conn.close()
        for header in raw.headers.get_all("Set-Cookie") or []:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel
        return Response(status=raw.status, headers=raw.headers, body=data, url=url)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def cookie(self, name: str) -> str | None:
        morsel = self.cookies.get(name)
        return morsel.value if morsel else None

    def load_form(self, path: str) -> LoadedForm:
        """GET a page and take its first POST form as the browser shows it."""
        page = self.get(path)
        if page.status != 200:
            raise AssertionError(f"GET {path} answered {page.status}\n{page.text[:2000]}")
        if self.cookie("csrftoken") is None:
            raise AssertionError(f"GET {path} set no csrftoken cookie; cookies: {sorted(self.cookies)}")
        parser = _FormParser()
        parser.feed(page.text)
        forms = [f for f in parser.forms if f.method == "post"]
        if not forms:
            raise AssertionError(f"no POST form on {path}")
        action = urljoin(page.url, forms[0].action) if forms[0].action else page.url
        return LoadedForm(page_url=page.url, action=action, fields=forms[0].fields)

    def post_form(self, form: LoadedForm, data: dict[str, str]) -> Response:
        """Send ``form`` filled in with ``data`` (over what the page put
        there: the CSRF token, the formset's management form, hidden fields),
        with the Referer and Origin a browser sends."""
        fields = [(k, v) for k, v in form.fields if k not in data]
        fields += list(data.items())
        if not any(k == "csrfmiddlewaretoken" for k, _ in fields):
            fields.append(("csrfmiddlewaretoken", self.cookie("csrftoken") or ""))
        return self.request(
            "POST",
            form.action,
            body=urlencode(fields).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": form.page_url,
                "Origin": self.base_url,
            },
        )

    def submit_form(self, path: str, data: dict[str, str]) -> Response:
        """Open the page at ``path``, fill in its form and send it."""
        return self.post_form(self.load_form(path), data)
