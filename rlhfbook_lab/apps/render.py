"""What the slides and the static site share: maths to MathML, code to highlighted HTML, figures to data URIs.

Everything happens at build time, so a built page needs no script, no font and no request to render:

- **Maths** — LaTeX to MathML Core with the pure-Python ``latex2mathml``; browsers render MathML natively
  (Chromium since 109, Firefox, Safari), with no JavaScript and no web font. A formula ``latex2mathml`` cannot
  parse fails the build, naming the formula.
- **Code** — Pygments, with its stylesheet inlined into the page.
- **Figures** — matplotlib to SVG (text as paths, so no font is needed to view it), embedded as a base64 data URI.
"""

from __future__ import annotations

import base64
import html
import io
import re

from latex2mathml.converter import convert as _latex2mathml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

# $$…$$ (display, may span lines) or $…$ (inline: no space just inside the dollars, no digit right after the closing
# one, so "costs $5 and $6" is not maths). A backslash-escaped dollar is never a delimiter.
MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$(?=[^\s$])((?:\\\$|[^$\n])+?)(?<=[^\s\\])\$(?!\d)", re.S)

# latex2mathml leaves a few symbols as text; MathML Core needs them as operators.
_FIXES = (("<mi>&#x0007E;</mi>", "<mo>&#x0223C;</mo>"),  # \sim came out as a tilde identifier
          (">\\|<", ">&#x02016;<"),                          # \big\| as a literal "\|"
          ("\\_", "_"))                                      # \text{log\_ratio}


class MathError(ValueError):
    """A formula the LaTeX-to-MathML converter could not handle."""


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """One LaTeX formula (without its dollars) as a ``<math>`` element; ``display`` for a centred block formula."""
    try:
        out = _latex2mathml(tex.strip(), display="block" if display else "inline")
    except Exception as e:  # the converter raises many exception types; all mean "cannot convert this"
        raise MathError(f"cannot convert the formula ${tex.strip()}$ to MathML: {type(e).__name__}: {e}") from e
    for old, new in _FIXES:
        out = out.replace(old, new)
    if "<merror" in out:
        raise MathError(f"the formula ${tex.strip()}$ converted to a MathML error")
    unknown = re.findall(r"\\[A-Za-z]+", out)  # the converter copies commands it does not know as text
    if unknown:
        raise MathError(f"the formula ${tex.strip()}$ uses command(s) the converter does not know: {unknown}")
    # Keep the LaTeX as the annotation screen readers and copy-paste can use.
    return out.replace("<math ", f'<math alttext="{html.escape(tex.strip(), quote=True)}" ', 1)


def math_in_text(text: str) -> str:
    """Replace every ``$…$`` and ``$$…$$`` in plain (unescaped) text by MathML; other text is HTML-escaped."""
    out, last = [], 0
    for m in MATH.finditer(text):
        out.append(html.escape(text[last:m.start()], quote=False))
        display = m.group(1) is not None
        out.append(tex_to_mathml(m.group(1) if display else m.group(2), display))
        last = m.end()
    out.append(html.escape(text[last:], quote=False))
    return "".join(out).replace("\\$", "$")


def math_in_html(page: str, skip=("pre", "code", "script", "style", "math", "textarea")) -> tuple[str, int]:
    """Render the maths left as ``$…$`` in an HTML page's text (outside ``skip`` elements) as MathML.

    Returns the page and the number of formulas converted. Used on nbconvert's output, which keeps a markdown
    cell's maths as literal text for MathJax to find at view time.
    """
    from bs4 import BeautifulSoup, NavigableString  # deferred: only the site needs an HTML parser

    soup = BeautifulSoup(page, "html.parser")
    count = 0
    for node in list(soup.find_all(string=MATH)):
        if not isinstance(node, NavigableString) or any(p.name in skip for p in node.parents):
            continue
        count += len(MATH.findall(str(node)))
        node.replace_with(BeautifulSoup(math_in_text(str(node)), "html.parser"))
    return str(soup), count


# --- code -----------------------------------------------------------------------------------------------------------
FORMATTER = HtmlFormatter(cssclass="hl", style="friendly")


def highlight_code(code: str, language: str = "python") -> str:
    """Code as highlighted HTML (``<div class="hl"><pre>…``); unknown languages come out plain."""
    try:
        lexer = get_lexer_by_name(language or "text")
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(code, lexer, FORMATTER)


def code_css() -> str:
    """The stylesheet for :func:`highlight_code`'s output."""
    return FORMATTER.get_style_defs(".hl")


# --- figures --------------------------------------------------------------------------------------------------------
def figure_to_data_uri(fig) -> str:
    """A matplotlib figure as an SVG data URI (text drawn as paths: viewing it needs no font); the figure is closed."""
    import matplotlib.pyplot as plt  # deferred: matplotlib is heavy and only figures need it

    buf = io.BytesIO()
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "rlhfbook"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


# Font stacks of fonts already on the reader's machine: nothing is fetched.
FONT_CSS = """
:root { --sans: system-ui, -apple-system, "Segoe UI", "Noto Sans", "DejaVu Sans", Helvetica, Arial, sans-serif;
        --mono: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }
math { font-family: "STIX Two Math", "Latin Modern Math", "Cambria Math", math; }
math[display="block"] { display: block math; margin: 0.6em 0; }
"""
