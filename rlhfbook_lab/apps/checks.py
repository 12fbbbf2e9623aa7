"""Checks of a built page in headless Chromium: no request leaves the machine, maths rendered, every image
loaded, no slide overflows its 16:9 frame. Used by ``tests/test_browser.py``; each check returns a list of
problems (empty: passed) so a test can show them all at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rlhfbook_lab.apps.browser import Browser

# What a page looks like after the checks' script ran in it: counts, and the offending items if any.
PAGE_STATE = r"""
(() => {
  const skip = 'pre, code, script, style, math, textarea, .jp-OutputArea-output pre';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const m = node.textContent.match(
      /\$\$[^$]+\$\$|\$[^\s$][^$\n]*[^\s\\$]\$(?!\d)|\$[^\s$]\$|\\\(|\\\[|\\frac|\\mathbb/);
    if (m) raw.push(m[0].slice(0, 80));
  }
  const maths = [...document.querySelectorAll('math')];
  const images = [...document.images];
  const slides = [...document.querySelectorAll('.slide')];
  return {
    title: document.title,
    maths: maths.length,
    mathml_native: maths.every(m => m instanceof MathMLElement),
    maths_unrendered: maths.filter(m => m.getClientRects().length && m.getBoundingClientRect().width === 0).length,
    error_nodes: document.querySelectorAll('merror, .katex-error, mjx-merror, .MathJax_Error').length,
    raw_tex: raw,
    images: images.length,
    broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 60)),
    slides: slides.map((s, k) => ({index: k + 1, w: s.clientWidth, h: s.clientHeight,
                                   sw: s.scrollWidth, sh: s.scrollHeight,
                                   clipped: [...s.querySelectorAll('pre, table, figure, .col')]
                                       .filter(e => e.scrollWidth > e.clientWidth + 1 ||
                                                    e.scrollHeight > e.clientHeight + 1)
                                       .map(e => e.tagName.toLowerCase())})),
    external_refs: [...document.querySelectorAll('[src], link[href], object[data]')]
        .map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('data'))
        .filter(u => /^(https?:)?\/\//i.test(u)),
    scripts_external: [...document.scripts].filter(s => s.src && !s.src.startsWith('file:')).length,
    height: document.documentElement.scrollHeight,
  };
})()
"""


@dataclass
class PageReport:
    """The result of checking one page; ``problems`` is empty when every check passed."""

    path: Path
    blocked: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def check_page(browser: Browser, path: str | Path, screenshot_dir: str | Path | None = None,
               width: int = 1400, height: int = 900, expect_maths: bool = False,
               phone: bool = False) -> PageReport:
    """Open ``path`` from ``file://`` with every other request blocked and run the checks.

    Slides (elements ``.slide``) must each fit their box: scroll size ≤ client size (1 px of rounding allowed).
    ``expect_maths``: the page must contain at least one ``<math>`` element. Screenshots (PNG) go to
    ``screenshot_dir``: each slide, or for other pages the top of the page at ``width`` and, with ``phone``, at a
    390 × 844 phone viewport.
    """
    path = Path(path).resolve()
    report = PageReport(path)
    page = browser.new_page(width, height)
    try:
        page.goto(path.as_uri())
        report.blocked = list(page.blocked)
        state = report.state = page.evaluate(PAGE_STATE)
        if report.blocked:
            report.problems.append(f"{len(report.blocked)} request(s) left the machine: {report.blocked[:5]}")
        if state["external_refs"]:
            report.problems.append(f"references to the network: {state['external_refs'][:5]}")
        if state["raw_tex"]:
            report.problems.append(f"maths left as raw TeX: {state['raw_tex'][:5]}")
        if state["error_nodes"]:
            report.problems.append(f"{state['error_nodes']} maths error node(s)")
        if not state["mathml_native"]:
            report.problems.append("a <math> element is not a MathMLElement (MathML not rendered natively)")
        if state["maths_unrendered"]:
            report.problems.append(f"{state['maths_unrendered']} <math> element(s) rendered with zero width")
        if expect_maths and state["maths"] == 0:
            report.problems.append("no <math> element on a page that should have maths")
        if state["broken_images"]:
            report.problems.append(f"images that did not load: {state['broken_images'][:5]}")
        for s in state["slides"]:
            if s["w"] != 1280 or s["h"] != 720:
                report.problems.append(f"slide {s['index']} is {s['w']} × {s['h']}, not 1280 × 720")
            if s["sh"] > s["h"] + 1 or s["sw"] > s["w"] + 1:
                report.problems.append(f"slide {s['index']} overflows its frame: content {s['sw']} × {s['sh']} "
                                       f"in {s['w']} × {s['h']}")
            if s["clipped"]:
                report.problems.append(f"slide {s['index']}: content cut off inside {s['clipped']}")
        if screenshot_dir is not None:
            report.screenshots = _screenshots(page, path, Path(screenshot_dir), state, width, phone, browser)
    finally:
        page.close()
    return report


def _screenshots(page, path: Path, out: Path, state: dict, width: int, phone: bool, browser: Browser) -> list[Path]:
    stem = re.sub(r"[^\w.-]", "_", path.stem)
    shots = []
    if state["slides"]:
        boxes = page.evaluate("[...document.querySelectorAll('.slide')].map(s => { const r = "
                              "s.getBoundingClientRect(); return {x: r.left + scrollX, y: r.top + scrollY, "
                              "width: r.width, height: r.height}; })")
        for k, box in enumerate(boxes, start=1):
            shots.append(page.screenshot(out / stem / f"slide-{k:02d}.png", clip=box))
        return shots
    shots.append(page.screenshot(out / f"{stem}.png"))
    if phone:
        mobile = browser.new_page(390, 844, scale=2, mobile=True)
        try:
            mobile.goto(path.as_uri())
            shots.append(mobile.screenshot(out / f"{stem}-phone.png"))
            if mobile.blocked:
                raise AssertionError(f"{path} requested {mobile.blocked} on a phone viewport")
        finally:
            mobile.close()
    return shots
