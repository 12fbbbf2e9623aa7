"""Every built deck and site page in headless Chromium, from ``file://``, with every other request blocked and
counted (it must be 0): maths rendered as MathML (no raw ``$…$``, no error node), every image loaded, no slide
overflowing its 1280 × 720 frame. Screenshots go to ``build/screenshots/`` (ignored by git), with ``report.json``.

By default the pages are built here: every deck, and a site from a synthetic lesson (tests/_pages.py). With
``RLHFBOOK_PAGES="DIR [DIR ...]"`` the tests check the pages already in those folders instead — what CI does after
``rlhfbook-lab slides`` and ``rlhfbook-lab site`` (``.ci/run``). Without Chromium the tests skip, except under
``CI``, where a missing browser is a failure.
"""

import json
import os
import re
from pathlib import Path

import pytest
from _pages import REPO, all_decks, synthetic_site

from rlhfbook_lab.apps.browser import Browser, find_chromium
from rlhfbook_lab.apps.checks import check_page
from rlhfbook_lab.apps.slides import deck_paths

SHOTS = REPO / "build" / "screenshots"
GIVEN = [Path(d) for d in os.environ.get("RLHFBOOK_PAGES", "").split()]
REPORT: dict[str, dict] = {}


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        reason = ("no Chromium found: install Debian's `chromium` package (apt-get install chromium) or set "
                  "RLHFBOOK_CHROMIUM to a Chromium executable")
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    with Browser() as b:
        yield b
    SHOTS.mkdir(parents=True, exist_ok=True)
    report = SHOTS / "report.json"
    old = json.loads(report.read_text()) if report.exists() else {}
    report.write_text(json.dumps({**old, **REPORT}, indent=1, sort_keys=True))


def check(browser, page: Path, shots: Path, **kw):
    report = check_page(browser, page, shots, **kw)
    REPORT[str(page.relative_to(REPO) if page.is_relative_to(REPO) else page)] = {
        "requests_blocked": len(report.blocked), "maths": report.state.get("maths"),
        "images": report.state.get("images"), "slides": len(report.state.get("slides", [])),
        "screenshots": [str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in report.screenshots],
        "problems": report.problems}
    assert report.blocked == [], f"{page.name}: {len(report.blocked)} request(s) left the machine: {report.blocked}"
    assert report.problems == [], f"{page.name}: " + "; ".join(report.problems)
    return report


def _given_pages():
    pages = []
    for folder in GIVEN:
        if not folder.is_dir():
            raise FileNotFoundError(f"RLHFBOOK_PAGES names {folder}, which is not a folder")
        pages += sorted(folder.glob("*.html"))
    return pages


if GIVEN:
    @pytest.mark.parametrize("page", _given_pages(), ids=lambda p: f"{p.parent.name}/{p.name}")
    def test_built_page(browser, page):
        """A page built by the CLI: decks (with their PDF), lesson pages (also at a phone's width), indexes."""
        html = page.read_text(encoding="utf-8")
        is_deck = 'class="slide' in html
        is_index = page.name == "index.html"
        report = check(browser, page, SHOTS / page.parent.name, expect_maths=not is_index,
                       phone=not is_deck)
        if is_deck:
            assert len(report.state["slides"]) == html.count('<section class="slide')
            pdf = page.with_suffix(".pdf")
            assert pdf.exists(), f"{page.name} has no PDF beside it"
            pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))
            assert pages == len(report.state["slides"]), f"{pdf.name}: {pages} PDF pages for " \
                                                         f"{len(report.state['slides'])} slides"
        if is_index:
            assert report.state["images"] == 0 and report.state["maths"] == 0
else:
    @pytest.mark.parametrize("deck", [p.name[:2] for p in deck_paths()])
    def test_deck(browser, deck):
        """Every deck, built here (HTML): offline, maths rendered, images loaded, no slide overflowing."""
        report = check(browser, all_decks()[deck], SHOTS / "slides", expect_maths=True)
        assert len(report.state["slides"]) >= 8 and report.state["images"] >= 1

    def test_site_page(browser):
        """A lesson page and the index of the synthetic site (tests/_pages.py), at a desktop's and a phone's width."""
        site_dir, _, _ = synthetic_site()
        report = check(browser, site_dir / "99_synthetic.html", SHOTS / "site", expect_maths=True, phone=True)
        assert report.state["maths"] == 2 and report.state["images"] == 1 and len(report.screenshots) == 2
        check(browser, site_dir / "index.html", SHOTS / "site", phone=True)


def test_the_check_catches_what_it_should(browser, tmp_path):
    """A page that breaks every rule: the checks must see each breach (a check that cannot fail is no check)."""
    bad = tmp_path / "bad.html"
    bad.write_text("""<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.org/x.css">
<script src="http://cdn.example.org/katex.js"></script></head><body>
<p>raw maths $x^2$ left for a script</p><img src="missing.png">
<section class="slide" style="width:1280px;height:720px;overflow:hidden"><div style="height:900px">tall</div></section>
</body></html>""")
    report = check_page(browser, bad, None)
    assert sorted(report.blocked) == ["http://cdn.example.org/katex.js", "https://cdn.example.org/x.css"]
    problems = " | ".join(report.problems)
    for expected in ("left the machine", "references to the network", "raw TeX", "did not load", "overflows"):
        assert expected in problems, (expected, problems)
