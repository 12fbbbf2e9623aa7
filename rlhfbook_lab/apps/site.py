"""The executed static site: every lesson run, rendered to HTML with its figures, and an index with the README's
lesson table. ``rlhfbook-lab site --out DIR [--full] [--lesson NN]``.

Executing every lesson costs minutes, so executed notebooks are cached in ``build/site-cache/`` (or
``$RLHFBOOK_SITE_CACHE``) under a key made of the notebook's bytes, the mode (fast or full) and a fingerprint of
the code and data it runs on (the package's modules outside ``apps/`` and the files under ``data/``): an unchanged
lesson is rendered from the cache, never re-run. The test run fills the same cache — ``nbval_cache`` stores each
lesson nbval executed with every cell passing — so in CI ``rlhfbook-lab site`` after ``pytest`` only renders
(``--cached-only`` makes a cache miss an error instead of a run).

Pages are rendered by nbconvert's ``lab`` template, minus its CDN scripts (require.js, MathJax, mermaid, widgets);
the maths nbconvert leaves as ``$…$`` for MathJax becomes MathML at build time (:func:`.render.math_in_html`),
images are already inlined as base64, so a page opens offline, on a phone too.
"""

from __future__ import annotations

import functools
import hashlib
import html
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from markdown_it import MarkdownIt

from rlhfbook_lab.apps.render import FONT_CSS, math_in_html

REPO = Path(__file__).resolve().parents[2]
LESSONS_DIR = REPO / "lessons"
README = REPO / "README.md"
MODES = ("fast", "full")


def cache_dir() -> Path:
    return Path(os.environ.get("RLHFBOOK_SITE_CACHE", REPO / "build" / "site-cache"))


def lesson_paths(lessons: list[str] | None = None, lessons_dir: Path = LESSONS_DIR) -> list[Path]:
    """The lesson notebooks ``NN_*.ipynb``, all or those of the given numbers."""
    paths = sorted(Path(lessons_dir).glob("[0-9][0-9]_*.ipynb"))
    if lessons:
        wanted = {f"{int(n):02d}" for n in lessons}
        missing = wanted - {p.name[:2] for p in paths}
        if missing:
            raise ValueError(f"no lesson notebook for {sorted(missing)} in {lessons_dir}")
        paths = [p for p in paths if p.name[:2] in wanted]
    return paths


# --- the cache ------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of what a lesson's outputs depend on besides its own text: the package outside ``apps/`` and
    ``data/``. Computed once per process (≈ 0.1 s)."""
    package = REPO / "rlhfbook_lab"
    files = sorted(p for p in package.rglob("*.py") if "apps" not in p.relative_to(package).parts)
    files += sorted(p for p in (REPO / "data").rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(notebook: str | Path, mode: str) -> str:
    """The cache key of a lesson: its bytes, the mode, and :func:`code_fingerprint`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    h = hashlib.sha256(Path(notebook).read_bytes())
    h.update(mode.encode() + code_fingerprint().encode())
    return h.hexdigest()[:20]


def cache_path(notebook: str | Path, mode: str) -> Path:
    return cache_dir() / f"{Path(notebook).stem}.{mode}.{cache_key(notebook, mode)}.ipynb"


def store_executed(notebook: str | Path, mode: str, executed) -> Path:
    """Write an executed notebook into the cache (atomically), replacing older entries of the same lesson/mode."""
    target = cache_path(notebook, mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f"{Path(notebook).stem}.{mode}.*.ipynb"):
        if old != target:
            old.unlink()
    tmp = target.with_suffix(".tmp")
    nbformat.write(executed, str(tmp))
    tmp.replace(target)
    return target


def load_cached(notebook: str | Path, mode: str):
    """The cached executed notebook of this lesson in this mode, or None."""
    path = cache_path(notebook, mode)
    return nbformat.read(str(path), as_version=4) if path.exists() else None


def execute_lesson(notebook: str | Path, mode: str, timeout: int = 900):
    """Run a lesson top to bottom in a fresh kernel (``RLHFBOOK_FAST`` set by ``mode``), as nbval does."""
    from nbclient import NotebookClient  # deferred: only a cache miss needs a kernel

    notebook = Path(notebook)
    nb = nbformat.read(str(notebook), as_version=4)
    env = {**os.environ, "RLHFBOOK_FAST": "1" if mode == "fast" else "0", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_WAIT_POLICY": "PASSIVE"}
    client = NotebookClient(nb, timeout=timeout, kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
                            resources={"metadata": {"path": str(notebook.parent)}})
    client.execute(env=env)
    return nb


# --- rendering ------------------------------------------------------------------------------------------------------
SITE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">{{ resources.rlhfbook_css }}</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}{{ resources.rlhfbook_nav }}{%- endblock body_header -%}
"""

PAGE_CSS = FONT_CSS + """
.site-nav { font-family: var(--sans); padding: 8px 16px; border-bottom: 1px solid #ddd; background: #f6f8fb;
            font-size: 15px; }
.site-nav a { color: #0b5ed7; }
.jp-RenderedHTMLCommon math { font-size: 1.05em; }
.jp-RenderedImage img, .jp-OutputArea-output img { max-width: 100%; height: auto; }
.jp-OutputArea-output pre, .jp-RenderedHTMLCommon pre { overflow-x: auto; }
.jp-RenderedHTMLCommon table { display: block; overflow-x: auto; max-width: 100%; }
@media (max-width: 640px) {
  .jp-InputPrompt, .jp-OutputPrompt { display: none; }
  .jp-Cell { padding: 4px 2px; }
  body.jp-Notebook { padding: 0; }
}
"""


def render_lesson(executed, title: str, nav: str = "") -> tuple[str, int]:
    """An executed notebook as one self-contained HTML page; returns the page and how many formulas it has."""
    from jinja2 import DictLoader  # deferred with nbconvert: only the site renders notebooks
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"rlhfbook_site.html.j2": SITE_TEMPLATE})])
    exporter.template_file = "rlhfbook_site.html.j2"
    body, _ = exporter.from_notebook_node(executed, resources={"metadata": {"name": title},
                                                                "rlhfbook_css": PAGE_CSS, "rlhfbook_nav": nav})
    page, n_maths = math_in_html(body)
    leaks = re.findall(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//[^"'\s>]+""", page)
    if leaks:
        raise ValueError(f"the rendered page {title!r} still references the network: {leaks[:3]}")
    return page, n_maths


def readme_lesson_table(readme: str | Path = README) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the README's table under ``## Lessons`` (the one source of the lesson list)."""
    text = Path(readme).read_text(encoding="utf-8")
    m = re.search(r"^## Lessons\s*$(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        raise ValueError(f"{readme} has no '## Lessons' section")
    lines = [ln.strip() for ln in m.group(1).splitlines() if ln.strip().startswith("|")]
    if len(lines) < 3:
        raise ValueError(f"the '## Lessons' section of {readme} has no table")

    def cells(line):
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]

    return cells(lines[0]), [cells(ln) for ln in lines[2:]]


def index_html(built: dict[str, str], mode: str, readme: str | Path = README) -> str:
    """The site's index: the README's lesson table, each lesson's file name linked to its page when built."""
    md = MarkdownIt("commonmark")
    header, rows = readme_lesson_table(readme)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        out = []
        for cell in row:
            rendered = md.renderInline(cell)
            for stem, href in built.items():
                rendered = rendered.replace(f"<code>{stem}.ipynb</code>",
                                            f'<a href="{href}"><code>{stem}.ipynb</code></a>')
            out.append(f"<td>{rendered}</td>")
        body.append("<tr>" + "".join(out) + "</tr>")
    return INDEX.format(css=FONT_CSS + INDEX_CSS, head=head, rows="".join(body), mode=mode, n=len(built))


INDEX_CSS = """
body { font-family: var(--sans); margin: 0 auto; max-width: 72rem; padding: 1rem; line-height: 1.5; color: #1d1d1f; }
table { border-collapse: collapse; width: 100%; font-size: 15px; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6fb; }
code { font-family: var(--mono); font-size: 0.9em; }
.wrap { overflow-x: auto; }
@media (max-width: 640px) { td:nth-child(4), th:nth-child(4) { display: none; } }
"""

INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rlhfbook_lab · the lessons, executed</title><style>{css}</style></head>
<body><h1>rlhfbook_lab · the lessons, executed</h1>
<p>Every lesson run top to bottom ({mode} mode) and rendered with its figures: read any of them without running it.
{n} page(s) built by <code>rlhfbook-lab site</code>.</p>
<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>
</body></html>
"""


@dataclass
class BuiltPage:
    lesson: str
    html: Path
    from_cache: bool
    seconds: float  # wall seconds to execute (0 when cached) and render
    maths: int


def build_site(out_dir: str | Path, lessons: list[str] | None = None, full: bool = False,
               cached_only: bool = False, lessons_dir: Path = LESSONS_DIR, readme: str | Path = README,
               log=print) -> list[BuiltPage]:
    """Execute (or take from the cache) and render every lesson into ``out_dir``, with ``index.html``."""
    mode = "full" if full else "fast"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for notebook in lesson_paths(lessons, lessons_dir):
        t0 = time.perf_counter()
        executed = load_cached(notebook, mode)
        from_cache = executed is not None
        if executed is None:
            if cached_only:
                raise FileNotFoundError(f"{notebook.name} ({mode} mode) is not in the cache {cache_dir()} and "
                                        "--cached-only forbids running it (run pytest, or drop --cached-only)")
            log(f"site: executing {notebook.name} ({mode} mode)...")
            executed = execute_lesson(notebook, mode)
            store_executed(notebook, mode, executed)
        title = _title(executed, notebook)
        nav = (f'<nav class="site-nav"><a href="index.html">← all lessons</a> · {html.escape(notebook.name)} · '
               f'executed in {mode} mode</nav>')
        page, n_maths = render_lesson(executed, title, nav)
        target = out_dir / f"{notebook.stem}.html"
        target.write_text(page, encoding="utf-8")
        built.append(BuiltPage(notebook.name[:2], target, from_cache, time.perf_counter() - t0, n_maths))
        log(f"site {notebook.name[:2]}: {'cached' if from_cache else 'executed'}, {n_maths} formulas, "
            f"{built[-1].seconds:.1f} s → {target}")
    (out_dir / "index.html").write_text(index_html({p.html.stem: p.html.name for p in built}, mode, readme),
                                        encoding="utf-8")
    return built


def _title(nb, notebook: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return re.sub(r"[*_`]", "", m.group(1)).strip()
    return notebook.stem
