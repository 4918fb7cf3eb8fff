"""static/css/patient.min.css, the patient pages' one stylesheet.

`make css` builds it (assets/css/build.mjs, set up in assets/css/patient.json)
from Bootstrap's compiled CSS and static/css/site.css, keeping only what the
templates, crispy-forms' templates, static/js/ and requests_app/ name. The
built file is committed: a checkout runs without npm.

Where Node.js and the npm packages are there, the build is run again into a
temporary file and must give the committed bytes. Without them that test
skips, saying why, or fails under REQUIRE_SERVICES=1 (CI). The other tests
need only Python: each Bootstrap or site.css class a page names must be in
the built file, no page may name a component the build leaves out, and the
file must stay within its size budget.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.requirements import service_missing

CONFIG = json.loads((REPO / "assets" / "css" / "patient.json").read_text(encoding="utf-8"))
BUILD_SCRIPT = REPO / "assets" / "css" / "build.mjs"
BUILT = REPO / CONFIG["output"]
LEFT_OUT = [name for group in ("needs_bootstrap_js", "unused_crispy_layouts") for name in CONFIG["left_out"][group]]
LEFT_OUT_PSEUDO_ELEMENTS = CONFIG["left_out_pseudo_elements"]["file_inputs"]
REBUILD = "run `make css` and commit static/css/patient.min.css"


def crispy_templates() -> Path:
    import crispy_bootstrap5

    return Path(crispy_bootstrap5.__file__).parent / "templates"


def files(patterns: Iterable[str], root: Path = REPO) -> list[Path]:
    """The files the patterns name, as the build's fast-glob reads them: a
    pattern starting with ! takes its files out of the others'."""
    found: set[Path] = set()
    left_out: set[Path] = set()
    for pattern in patterns:
        if pattern.startswith("!"):
            # fast-glob's "dir/**" is every file below dir; pathlib's, only the folders.
            left_out.update(root.glob(pattern[1:].removesuffix("/**") + "/**/*"))
        else:
            found.update(path for path in root.glob(pattern) if path.is_file())
    return sorted(found - left_out)


# --- Which classes the content names ----------------------------------------

WORD = re.compile(r"[A-Za-z0-9_-]+")
TEMPLATE_CLASS = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)')""")
# As in assets/css/build.mjs: crispy's css_class=…, attrs={"class": …}, and
# HTML built in Python.
PYTHON_CLASS_STRINGS = [
    re.compile(r"""\b(?:css_class|wrapper_class|field_class|label_class)\s*=\s*(["'])(.*?)\1"""),
    re.compile(r"""["']class["']\s*:\s*(["'])(.*?)\1"""),
    re.compile(r"""\bclass=\\?(["'])(.*?)\\?\1"""),
]
JS_CLASS_STRINGS = [
    re.compile(r"""classList\.(?:add|remove|toggle|replace)\(([^)]*)\)"""),
    re.compile(r"""className\s*=\s*(["'])(.*?)\1"""),
]


def template_classes(paths: Iterable[Path]) -> set[str]:
    named: set[str] = set()
    for path in paths:
        for match in TEMPLATE_CLASS.finditer(path.read_text(encoding="utf-8", errors="replace")):
            named.update(WORD.findall(match.group(1) or match.group(2) or ""))
    return named


def python_classes() -> set[str]:
    named: set[str] = set()
    for path in files(CONFIG["python"]):
        text = path.read_text(encoding="utf-8")
        for pattern in PYTHON_CLASS_STRINGS:
            for match in pattern.finditer(text):
                named.update(WORD.findall(match.group(2)))
    return named


def js_classes() -> set[str]:
    named: set[str] = set()
    for path in files(["static/js/**/*.js"]):
        text = path.read_text(encoding="utf-8")
        for pattern in JS_CLASS_STRINGS:
            for match in pattern.finditer(text):
                named.update(WORD.findall(match.group(match.lastindex or 1)))
    return named


def patient_templates() -> list[Path]:
    """What patient pages render: templates/ but the staff pages and emails."""
    staff, emails = REPO / "templates" / "admin", REPO / "templates" / "emails"
    return [
        path
        for path in files(["templates/**/*.html", "templates/**/*.txt"])
        if not path.is_relative_to(staff) and not path.is_relative_to(emails)
    ]


# --- Which classes a stylesheet has -------------------------------------------


def selectors(css: str) -> Iterator[str]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    for prelude in re.findall(r"([^{}]+)\{", css):
        prelude = prelude.rsplit(";", 1)[-1].strip()  # after an @charset or @import
        if prelude and not prelude.startswith("@"):
            yield from split_selector_list(prelude)


def split_selector_list(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            yield text[start:i].strip()
            start = i + 1
    yield text[start:].strip()


def own_classes(selector: str) -> set[str]:
    """The classes a selector needs, leaving out those inside :not(…) and
    the like, and attribute values."""
    text = re.sub(r"\[[^\]]*\]", "", selector)
    while (simpler := re.sub(r":[\w-]+\([^()]*\)", "", text)) != text:
        text = simpler
    return set(re.findall(r"\.(-?[_a-zA-Z][\w-]*)", text))


def classes_of(css: str) -> set[str]:
    return {name for selector in selectors(css) for name in own_classes(selector)}


def standalone_classes(css: str) -> set[str]:
    """Classes with a rule of their own (``.mb-3``, ``.btn:hover``), not only
    as part of another (``.btn.active``)."""
    found = set()
    for selector in selectors(css):
        classes = own_classes(selector)
        if len(classes) == 1:
            found |= classes
    return found


def is_left_out(name: str) -> bool:
    return any(name == entry or name.startswith(f"{entry}-") for entry in LEFT_OUT)


def sources_css() -> str:
    return "\n".join((REPO / source).read_text(encoding="utf-8") for source in CONFIG["sources"])


# --- Python only ----------------------------------------------------------------


def test_base_template_links_the_built_stylesheet_alone():
    base = (REPO / "templates" / "base.html").read_text(encoding="utf-8")
    links = re.findall(r"<link\b[^>]*\brel=\"stylesheet\"[^>]*>", base)
    assert links == ['<link rel="stylesheet" href="{% static \'css/patient.min.css\' %}">']


def test_it_is_within_its_size_budget():
    size = BUILT.stat().st_size
    zipped = len(gzip.compress(BUILT.read_bytes(), compresslevel=9, mtime=0))
    assert size <= CONFIG["budget_bytes"], (
        f"{BUILT.name} is {size} bytes ({zipped} gzipped), over the budget of {CONFIG['budget_bytes']} "
        "(assets/css/patient.json)"
    )


def test_every_class_a_page_names_is_in_it():
    """A class named in a template, static/js or requests_app/ that Bootstrap
    or site.css has a rule for, and that is not left out, must be in the
    built file: when it is not, the file is older than the templates."""
    named = (
        template_classes(files(CONFIG["content"]))
        | template_classes(files(["**/*.html"], crispy_templates()))
        | python_classes()
        | js_classes()
        | set(CONFIG["safelist"])
    )
    expected = {name for name in named & standalone_classes(sources_css()) if not is_left_out(name)}
    missing = sorted(expected - classes_of(BUILT.read_text(encoding="utf-8")))
    assert not missing, f"classes the pages name but {BUILT.name} lacks: {', '.join(missing)}: {REBUILD}"


def test_no_patient_page_names_a_component_the_build_leaves_out():
    named = template_classes(patient_templates()) | python_classes() | js_classes()
    used = sorted(name for name in named if is_left_out(name))
    assert not used, (
        f'{", ".join(used)}: left out of {BUILT.name} (assets/css/patient.json, "left_out"); '
        "take the entry out there, then `make css`"
    )


def test_no_patient_form_takes_a_file():
    """The build leaves out the file input's button styles
    ("left_out_pseudo_elements"); a form that takes a file needs them back."""
    in_templates = [
        path.relative_to(REPO)
        for path in patient_templates()
        if re.search(r"""type\s*=\s*["']?file\b""", path.read_text(encoding="utf-8", errors="replace"))
    ]
    in_python = [
        path.relative_to(REPO)
        for path in files(CONFIG["python"])
        if "admin" not in path.relative_to(REPO).parts
        and re.search(r"\b(?:FileField|ImageField|FileInput|ClearableFileInput)\b", path.read_text(encoding="utf-8"))
    ]
    assert not in_templates and not in_python, (
        f"a file input in {', '.join(map(str, in_templates + in_python))}: take "
        f"{', '.join(LEFT_OUT_PSEUDO_ELEMENTS)} out of assets/css/patient.json, then `make css`"
    )


def test_the_rules_every_page_relies_on_are_kept():
    css = BUILT.read_text(encoding="utf-8")
    assert css.startswith('@charset "UTF-8";'), "@charset must come first (site.css has non-ASCII content)"
    for rule in (
        "[hidden]{display:none!important}",
        ".visually-hidden,.visually-hidden-focusable:not(:focus):not(:focus-within){",
        ".d-none{display:none!important}",
        "@media (prefers-reduced-motion:reduce){",
        "a:focus-visible,",
        ".form-control.is-invalid,",
        ".invalid-feedback{",
        ".alert-danger{",
        ".btn-primary{",
        "--bs-body-font-family:",
    ):
        assert rule in css, f"{rule!r} is missing from {BUILT.name}"
    assert "Bootstrap  v" in css, "Bootstrap's licence banner must stay"


# --- With Node.js: the committed file is what the build gives -----------------------


def build_packages() -> dict[str, str]:
    """The npm packages build.mjs imports, with the versions package.json pins."""
    pins = json.loads((REPO / "package.json").read_text(encoding="utf-8"))["devDependencies"]
    imported = re.findall(r'^import .* from "([^".][^"]*)";$', BUILD_SCRIPT.read_text(encoding="utf-8"), re.M)
    packages = sorted({name for name in imported if not name.startswith("node:")})
    assert packages and all(name in pins for name in packages), "build.mjs imports a package package.json does not pin"
    return {name: pins[name] for name in packages}


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        service_missing("Node.js", "node is not on PATH, so the CSS build cannot be checked (install Node.js and npm)")
    for name, version in build_packages().items():
        manifest = REPO / "node_modules" / name / "package.json"
        if not manifest.is_file():
            service_missing("the CSS build's npm packages", f"node_modules/{name} is missing (run `npm ci`)")
        installed = json.loads(manifest.read_text(encoding="utf-8"))["version"]
        if installed != version:
            service_missing(
                "the CSS build's npm packages",
                f"node_modules/{name} is {installed}, package.json pins {version} (run `npm ci`)",
            )
    return path


def run_build(node: str, out: Path) -> bytes:
    result = subprocess.run(
        [node, str(BUILD_SCRIPT), "--crispy-templates", str(crispy_templates()), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"the CSS build failed:\n{result.stdout}{result.stderr}"
    return out.read_bytes()


def test_the_committed_file_is_what_the_build_gives(node, tmp_path):
    first = run_build(node, tmp_path / "first.css")
    again = run_build(node, tmp_path / "again.css")
    assert first == again, "the CSS build gave different bytes for the same input"
    committed = BUILT.read_bytes()
    assert first == committed, (
        f"{BUILT.relative_to(REPO)} ({len(committed)} bytes) is not what its sources build "
        f"({len(first)} bytes): {REBUILD}"
    )
