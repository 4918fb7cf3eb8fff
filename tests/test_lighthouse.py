"""Lighthouse 12 (npm ``lighthouse``, on Debian's Chromium) scores the patient
pages 100 for Accessibility and Best Practices, and at least 90 for SEO on
the guide (``/`` and its /help/ steps: the pages a search engine may index;
the others say ``noindex`` on purpose and are not scored for it).

Pages: the start page ``/``, the /help/ step its first link into the guide
opens, the reset form and a status page, each audited once with Lighthouse's
mobile settings, all in one Chromium, on the app served as production serves
it (tests/support/checkers.py). Reports are kept in ``var/lighthouse/``.
Performance is not asserted here (noisy on shared cores): it is measured
with ``python -m tests.support.checkers lighthouse-performance`` and
recorded in docs/development.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from .support.checkers import ASSERTED_CATEGORIES, Lighthouse, PatientSite, failing_audits, lighthouse_pages, score

pytest_plugins = ["tests.support.checkers"]

PAGES = ["guide", "help-step", "reset-form", "status"]
# The pages meant for search engines.
GUIDE_PAGES = {"guide", "help-step"}
MIN_SEO = 0.9


@pytest.fixture(scope="module")
def audited(lighthouse: Lighthouse, patient_site: PatientSite) -> dict[str, Any]:
    """name -> Lighthouse report (or, for a page that cannot be found, why)."""
    paths = lighthouse_pages(patient_site)
    assert set(paths) == set(PAGES)
    found = {name: path for name, path in paths.items() if path is not None}
    for path in found.values():
        patient_site.assert_styled(path)
    reports: dict[str, Any] = lighthouse.run({name: patient_site.url + path for name, path in found.items()})
    for name in paths.keys() - found.keys():
        reports[name] = "the start page / has no link into the guide's steps under /help/"
    return reports


@pytest.mark.parametrize("page", PAGES)
def test_lighthouse_scores_accessibility_and_best_practices_100_and_the_guide_seo_90(
    audited: dict[str, Any], page: str
) -> None:
    report = audited[page]
    if isinstance(report, str):
        pytest.fail(f"{page}: {report}", pytrace=False)
    wanted = {"accessibility": 1.0, "best-practices": 1.0}
    if page in GUIDE_PAGES:
        wanted["seo"] = MIN_SEO
    got = {category: score(report, category) for category in ASSERTED_CATEGORIES}
    short = [category for category, minimum in wanted.items() if (got[category] or 0) < minimum]
    if short:
        lines = [
            f"Lighthouse {report['lighthouseVersion']} on {page} ({report['finalDisplayedUrl']}): "
            + ", ".join(f"{c} {got[c]}" for c in ASSERTED_CATEGORIES)
            + f"; wanted {', '.join(f'{c} >= {m}' for c, m in wanted.items())}",
            f"report: var/lighthouse/{page}.json",
        ]
        for category in short:
            lines.append(f"{category} loses points on:")
            lines.extend(failing_audits(report, category))
        pytest.fail("\n".join(lines), pytrace=False)
