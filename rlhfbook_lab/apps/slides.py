"""Slides: one markdown deck per lesson (``slides/NN_slug.md``) built into one self-contained HTML file, and a PDF.

``rlhfbook-lab slides [--lesson NN] [--out DIR]``. A deck is plain markdown with slides separated by a line ``---``
and three additions, each resolved at build time so a deck cannot drift from the package:

- ``![caption](figure:NAME?h=360&arg=value)`` alone on a line: the figure ``NAME`` of :mod:`.figures`, drawn now by
  the package's own functions (``h``: the image's maximum height in pixels; the other arguments go to the figure);
- a code fence whose info string is ``source rlhfbook_lab.module.function [from=TEXT] [to=TEXT] [docstring]``:
  that function's source, read with ``inspect.getsource`` (docstring dropped unless ``docstring`` is given;
  ``from``/``to`` keep the lines between two markers), highlighted, with its file and line;
- maths as ``$…$`` and ``$$…$$``, rendered to MathML, and a line ``+++`` that splits a slide into two columns.
  ``<!-- slide: CLASS -->`` adds a class to a slide (``title``, ``small``, ``center``).

The HTML needs no network: maths is MathML, code is highlighted, figures are data URIs, fonts are the reader's own
(``slides/README.md`` says why). It shows the slides one under the other; ``p`` presents them one at a time
(arrows, space, Escape). The PDF is the same page printed by headless Chromium, one 1280 × 720 page per slide.
"""

from __future__ import annotations

import ast
import html
import importlib
import inspect
import re
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

from rlhfbook_lab.apps.render import FONT_CSS, MATH, code_css, highlight_code, tex_to_mathml

REPO = Path(__file__).resolve().parents[2]
SLIDES_DIR = REPO / "slides"
WIDTH, HEIGHT = 1280, 720

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?(?<!`)\1(?!`)")
_FIGURE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\(figure:(?P<name>[A-Za-z0-9_]+)(?:\?(?P<query>[^)\s]*))?\)[ \t]*$",
                     re.M)
_SLIDE_CLASS = re.compile(r"^<!--\s*slide:\s*([\w\s-]+?)\s*-->[ \t]*\n?", re.M)
_PLACEHOLDER = re.compile(r"@@RLHFBOOK(\d+)@@")


class DeckError(ValueError):
    """A deck that cannot be built: an unknown figure or function, a formula that does not convert."""


# --- markdown with maths, figures and source ------------------------------------------------------------------------
class _Stash:
    """Finished HTML kept out of the markdown parser's way behind placeholders, put back after it ran."""

    def __init__(self):
        self.items: list[str] = []

    def keep(self, fragment: str) -> str:
        self.items.append(fragment)
        return f"@@RLHFBOOK{len(self.items) - 1}@@"

    def restore(self, rendered: str) -> str:
        rendered = re.sub(r"<p>(@@RLHFBOOK\d+@@)</p>", r"\1", rendered)  # a block placeholder alone in a paragraph
        return _PLACEHOLDER.sub(lambda m: self.items[int(m.group(1))], rendered)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True, "typographer": False}).enable(["table", "strikethrough"])
    md.options["highlight"] = lambda code, lang, attrs: highlight_code(code, lang or "text")
    return md


def source_listing(spec: str) -> str:
    """The HTML of a ``source`` fence: ``rlhfbook_lab.mod.fn [from=TEXT] [to=TEXT] [docstring]``.

    ``from``/``to`` cut an excerpt by content, not by line number, so it cannot silently shift when the function
    changes: from the first line containing ``from`` to the next line containing ``to`` (both included). A marker
    that matches no line fails the build.
    """
    words = spec.split()
    if not words:
        raise DeckError("a `source` fence needs a dotted name: ```source rlhfbook_lab.equations.kl.kl_k3")
    obj = resolve_object(words[0])
    options = dict(w.split("=", 1) if "=" in w else (w, "") for w in words[1:])
    unknown = set(options) - {"from", "to", "docstring"}
    if unknown:
        raise DeckError(f"unknown option(s) {sorted(unknown)} in ```source {spec}; expected from=, to=, docstring")
    src = textwrap.dedent(inspect.getsource(obj))
    if "docstring" not in options:
        src = _drop_docstring(src)
    lines = src.rstrip("\n").split("\n")
    start, end = 0, len(lines)
    if options.get("from"):
        start = next((i for i, ln in enumerate(lines) if options["from"] in ln), None)
        if start is None:
            raise DeckError(f"```source {spec}: no line of {words[0]} contains {options['from']!r}")
    if options.get("to"):
        stop = next((i for i, ln in enumerate(lines) if i >= start and options["to"] in ln), None)
        if stop is None:
            raise DeckError(f"```source {spec}: no line of {words[0]} after the start contains {options['to']!r}")
        end = stop + 1
    excerpt = textwrap.dedent("\n".join(lines[start:end]))
    target = inspect.unwrap(obj)  # a decorated function (@torch.no_grad()) lives where its wrapped one does
    path = Path(inspect.getsourcefile(target)).resolve()
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    first = inspect.getsourcelines(target)[1]
    cut = " (excerpt)" if (start, end) != (0, len(lines)) else ""
    label = f'<div class="source-label">{html.escape(str(where))}:{first} · {html.escape(words[0])}{cut}</div>'
    return f'<div class="source">{label}{highlight_code(excerpt, "python")}</div>'


def resolve_object(dotted: str):
    """``rlhfbook_lab.equations.kl.kl_k3`` → the function (or class, or method: ``module.Class.method``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError as e:
            raise DeckError(f"cannot find {dotted!r}: {e}") from e
        return obj
    raise DeckError(f"cannot import any module of {dotted!r}")


def _drop_docstring(src: str) -> str:
    """A function's or class's source without its docstring (the slide shows the equation already)."""
    node = ast.parse(src).body[0]
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines = src.split("\n")
        del lines[body[0].lineno - 1:body[0].end_lineno]
        return "\n".join(lines)
    return src


def _figure_html(caption: str, name: str, query: str | None) -> str:
    from rlhfbook_lab.apps.figures import render_figure  # deferred: figures import matplotlib, torch and the package

    args = dict(pair.split("=", 1) for pair in query.split("&") if pair) if query else {}
    height = args.pop("h", None)
    try:
        return render_figure(name, caption=caption, max_height=int(height) if height else None, **args)
    except KeyError as e:
        raise DeckError(str(e)) from e


def _protect_text(text: str, stash: _Stash) -> str:
    """Maths and figures of markdown text outside code fences → placeholders; inline code spans untouched."""
    text = _FIGURE.sub(lambda m: stash.keep(_figure_html(m["caption"], m["name"], m["query"])), text)
    out, last = [], 0
    for span in _CODE_SPAN.finditer(text):
        out.append(_math_to_placeholders(text[last:span.start()], stash))
        out.append(span.group(0))
        last = span.end()
    out.append(_math_to_placeholders(text[last:], stash))
    return "".join(out)


def _math_to_placeholders(text: str, stash: _Stash) -> str:
    def one(m):
        display = m.group(1) is not None
        try:
            return stash.keep(tex_to_mathml(m.group(1) if display else m.group(2), display))
        except ValueError as e:
            raise DeckError(str(e)) from e

    return MATH.sub(one, text)


def render_markdown(text: str, md: MarkdownIt | None = None) -> str:
    """Markdown with ``$maths$``, figure lines and ``source`` fences → HTML."""
    md = md or _markdown()
    stash = _Stash()
    out, last = [], 0
    for fence in _FENCE.finditer(text):
        out.append(_protect_text(text[last:fence.start()], stash))
        info = fence["info"].strip()
        if info.split(" ", 1)[0] == "source":
            out.append("\n" + stash.keep(source_listing(info[len("source"):])) + "\n")
        else:
            out.append(fence.group(0))
        last = fence.end()
    out.append(_protect_text(text[last:], stash))
    return stash.restore(md.render("".join(out)))


# --- decks ----------------------------------------------------------------------------------------------------------
@dataclass
class Deck:
    """A parsed deck: its number, title and slides (markdown)."""

    path: Path
    number: str
    title: str
    slides: list[str]


def read_deck(path: str | Path) -> Deck:
    """Split ``slides/NN_slug.md`` into slides at lines that are exactly ``---`` (outside code fences)."""
    path = Path(path)
    m = re.match(r"(\d+)_", path.name)
    if not m:
        raise DeckError(f"{path.name}: a deck's file name starts with its lesson number, e.g. 05_reward_models.md")
    text = path.read_text(encoding="utf-8")
    slides, current, fence = [], [], None
    for line in text.split("\n"):
        stripped = line.strip()
        opener = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and opener:
            fence = opener.group(1)
        elif fence is not None and stripped.startswith(fence) and stripped.strip("`~") == "":
            fence = None
        if fence is None and stripped == "---":
            slides.append("\n".join(current))
            current = []
        else:
            current.append(line)
    slides.append("\n".join(current))
    slides = [s.strip("\n") for s in slides if s.strip()]
    if not slides:
        raise DeckError(f"{path}: the deck has no slides")
    title = re.search(r"^#\s+(.+)$", slides[0], re.M)
    return Deck(path, m.group(1), title.group(1).strip() if title else path.stem, slides)


def deck_paths(lessons: list[str] | None = None) -> list[Path]:
    """The decks in ``slides/`` (``NN_*.md``), all or those of the given lesson numbers (``["05", "8"]``)."""
    paths = sorted(SLIDES_DIR.glob("[0-9][0-9]_*.md"))
    if lessons:
        wanted = {f"{int(n):02d}" for n in lessons}
        missing = wanted - {p.name[:2] for p in paths}
        if missing:
            raise DeckError(f"no deck for lesson(s) {sorted(missing)} in {SLIDES_DIR} "
                            f"(there are: {', '.join(p.name[:2] for p in paths)})")
        paths = [p for p in paths if p.name[:2] in wanted]
    return paths


def _slide_html(markdown_text: str, index: int, total: int, deck: Deck, md: MarkdownIt) -> str:
    classes = ["slide"] + (["title"] if index == 0 else [])
    for m in _SLIDE_CLASS.finditer(markdown_text):
        classes += m.group(1).split()
    markdown_text = _SLIDE_CLASS.sub("", markdown_text)
    columns = re.split(r"^\+\+\+[ \t]*$", markdown_text, flags=re.M)
    if len(columns) == 1:
        body = render_markdown(markdown_text, md)
    else:  # a heading before the first column spans the slide
        head = re.match(r"\s*(#{1,3} [^\n]*\n)", columns[0])
        first = columns[0][head.end():] if head else columns[0]
        cols = "".join(f'<div class="col">{render_markdown(c, md)}</div>' for c in [first, *columns[1:]])
        body = (render_markdown(head.group(1), md) if head else "") + f'<div class="cols">{cols}</div>'
    footer = (f'<footer><span>Lesson {deck.number} · {html.escape(deck.title.split("·")[-1].strip())}</span>'
              f'<span>{index + 1} / {total}</span></footer>')
    return (f'<section class="{" ".join(classes)}" id="{index + 1}" aria-label="slide {index + 1}">'
            f'<div class="content">{body}</div>{footer}</section>')


def deck_html(deck: Deck) -> str:
    """The deck as one self-contained HTML page."""
    md = _markdown()
    slides = "\n".join(_slide_html(s, i, len(deck.slides), deck, md) for i, s in enumerate(deck.slides))
    return PAGE.format(title=html.escape(deck.title), css=FONT_CSS + SLIDE_CSS + code_css(), slides=slides,
                       script=SCRIPT, width=WIDTH, height=HEIGHT)


@dataclass
class BuiltDeck:
    number: str
    title: str
    html: Path
    pdf: Path | None
    slides: int
    cpu_seconds: float  # building the HTML (figures included), one process


def build_deck(path: str | Path, out_dir: str | Path) -> BuiltDeck:
    """Build one deck's HTML into ``out_dir`` (``NN_slug.html``); see :func:`build_decks` for the PDF."""
    deck = read_deck(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.process_time()
    page = deck_html(deck)
    seconds = time.process_time() - t0
    target = out_dir / f"{Path(path).stem}.html"
    target.write_text(page, encoding="utf-8")
    return BuiltDeck(deck.number, deck.title, target, None, len(deck.slides), seconds)


def build_decks(out_dir: str | Path, lessons: list[str] | None = None, pdf: bool = True,
                log=print) -> list[BuiltDeck]:
    """Build the decks (all, or ``lessons``) into ``out_dir`` with an ``index.html``; print each to PDF if asked.

    PDF needs Chromium (:mod:`.browser`); ``pdf=True`` without one raises :class:`~.browser.BrowserError`.
    """
    import matplotlib  # deferred: the backend is set before pyplot loads (figures import it)

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    built = []
    for path in deck_paths(lessons):
        deck = build_deck(path, out_dir)
        built.append(deck)
        log(f"slides {deck.number}: {deck.slides} slides, {deck.cpu_seconds:.1f} s CPU → {deck.html}")
    if pdf and built:
        from rlhfbook_lab.apps.browser import Browser  # deferred: only the PDF needs a browser

        with Browser() as browser:
            page = browser.new_page(WIDTH, HEIGHT)
            for deck in built:
                page.goto(deck.html.resolve().as_uri())
                if page.blocked:
                    raise DeckError(f"{deck.html} requested {page.blocked} while printing")
                deck.pdf = page.pdf(deck.html.with_suffix(".pdf"))
                log(f"slides {deck.number}: PDF → {deck.pdf}")
    (out_dir / "index.html").write_text(index_html(built), encoding="utf-8")
    return built


def index_html(decks: list[BuiltDeck]) -> str:
    rows = "".join(
        f'<li><a href="{d.html.name}">{html.escape(d.title)}</a>'
        + (f' · <a href="{d.pdf.name}">PDF</a>' if d.pdf else "") + f" · {d.slides} slides</li>"
        for d in decks)
    return INDEX.format(css=FONT_CSS, rows=rows)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
<p class="help">Press <kbd>p</kbd> to present (arrows, space; <kbd>Esc</kbd> to leave).
Slides are {width} × {height}.</p>
{slides}
<script>{script}</script>
</body></html>
"""

INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rlhfbook_lab · slides</title>
<style>{css} body {{ font-family: var(--sans); max-width: 46rem; margin: 2rem auto; padding: 0 1rem;
line-height: 1.6; }}</style></head>
<body><h1>rlhfbook_lab · slides</h1><p>One deck per lesson, built by <code>rlhfbook-lab slides</code>.</p>
<ul>{rows}</ul></body></html>
"""

SLIDE_CSS = """
* { box-sizing: border-box; }
body { margin: 0; padding: 12px 0; background: #e8e8ea; font-family: var(--sans); color: #1d1d1f; }
.help { text-align: center; font-size: 14px; color: #555; margin: 4px 0 12px; }
.slide { position: relative; width: 1280px; height: 720px; margin: 0 auto 16px; background: #fff; overflow: hidden;
         padding: 44px 64px 56px; box-shadow: 0 2px 10px rgba(0,0,0,.15); zoom: var(--zoom, 1);
         font-size: 25px; line-height: 1.38; }
.slide .content { height: 100%; display: flex; flex-direction: column; }
.slide footer { position: absolute; left: 64px; right: 64px; bottom: 16px; display: flex;
                justify-content: space-between; font-size: 15px; color: #888; }
.slide h1 { font-size: 50px; line-height: 1.15; margin: 0 0 24px; color: #0b3d91; }
.slide h2 { font-size: 38px; line-height: 1.2; margin: 0 0 20px; color: #0b3d91; }
.slide h3 { font-size: 28px; margin: 12px 0 8px; }
.slide p { margin: 0 0 14px; }
.slide ul, .slide ol { margin: 0 0 14px; padding-left: 1.3em; }
.slide li { margin-bottom: 8px; }
.slide li > ul, .slide li > ol { margin-top: 6px; }
.slide code { font-family: var(--mono); font-size: 0.86em; background: #f2f2f4; padding: 0 4px; border-radius: 3px; }
.slide a { color: #0b5ed7; }
.slide table { border-collapse: collapse; font-size: 21px; margin: 4px 0 14px; }
.slide th, .slide td { border-bottom: 1px solid #d8d8dc; padding: 5px 14px; text-align: left; }
.slide th { background: #f4f6fb; }
.slide td.num, .slide th.num { text-align: right; font-variant-numeric: tabular-nums; }
.slide blockquote { margin: 0 0 14px; padding: 8px 20px; border-left: 5px solid #0b3d91; background: #f4f6fb; }
.slide math[display="block"] { font-size: 1.15em; margin: 14px 0; }
.slide .hl, .slide pre { font-size: 16.5px; line-height: 1.3; margin: 0 0 12px; }
.slide .hl pre { margin: 0; padding: 10px 14px; background: #f7f7f9; border-radius: 6px; overflow: hidden; }
.slide .hl pre code, .slide pre code { background: none; padding: 0; font-size: 1em; }
.slide .source-label { font-family: var(--mono); font-size: 14px; color: #666; margin-bottom: 3px; }
.slide figure { margin: 0 auto 8px; text-align: center; }
.slide figure img { max-width: 100%; max-height: 470px; }
.slide figcaption { font-size: 17px; color: #555; margin-top: 2px; }
.slide .table-figure { text-align: left; }
.slide .table-figure table { font-size: 18px; margin: 0 auto 6px; }
.slide .table-figure th, .slide .table-figure td { padding: 3px 10px; }
.slide .cols { display: flex; gap: 40px; align-items: flex-start; min-height: 0; }
.slide .col { flex: 1 1 0; min-width: 0; }
.slide.title { justify-content: center; background: linear-gradient(135deg, #f4f6fb 0%, #ffffff 60%); }
.slide.title .content { justify-content: center; }
.slide.title h1 { font-size: 56px; }
.slide.small { font-size: 21px; }
.slide.small .hl pre { font-size: 15px; }
.slide.center .content { justify-content: center; }
.slide .note { font-size: 18px; color: #555; }
.slide .tokens span { font-family: var(--mono); font-size: 19px; padding: 2px 1px; margin: 0 0 4px;
                      display: inline-block; min-width: 0.7em; text-align: center; border-radius: 2px; }
body.present { background: #000; padding: 0; overflow: hidden; height: 100vh; display: flex; align-items: center;
               justify-content: center; }
body.present .help, body.present .slide:not(.current) { display: none; }
body.present .slide { margin: 0; box-shadow: none; }
@page { size: 1280px 720px; margin: 0; }
@media print {
  body { background: #fff; padding: 0; }
  .help { display: none; }
  .slide { zoom: 1 !important; margin: 0; box-shadow: none; break-after: page; }
}
"""

SCRIPT = """
const slides = [...document.querySelectorAll('.slide')]; let current = 0;
function fit() {
  const present = document.body.classList.contains('present');
  const zoom = present ? Math.min(innerWidth / 1280, innerHeight / 720) : Math.min(1, (innerWidth - 16) / 1280);
  document.documentElement.style.setProperty('--zoom', zoom);
}
function show(n) {
  current = Math.max(0, Math.min(slides.length - 1, n));
  slides.forEach((s, k) => s.classList.toggle('current', k === current));
  history.replaceState(null, '', '#' + (current + 1));
}
addEventListener('keydown', e => {
  const present = document.body.classList.contains('present');
  if (e.key === 'p') { document.body.classList.toggle('present'); show(current); fit(); }
  else if (present && ['ArrowRight', 'PageDown', ' '].includes(e.key)) show(current + 1);
  else if (present && ['ArrowLeft', 'PageUp'].includes(e.key)) show(current - 1);
  else if (present && e.key === 'Escape') { document.body.classList.remove('present'); fit();
                                             slides[current].scrollIntoView(); }
});
addEventListener('resize', fit); fit();
const start = parseInt(location.hash.slice(1)); if (start) current = start - 1;
"""
