"""Built pages the slide, site and browser tests share, each built once per test session (``lru_cache``):
every deck (HTML), and a one-lesson site made from a synthetic notebook that nbval executes, as CI does."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from rlhfbook_lab.apps.site import build_site
from rlhfbook_lab.apps.slides import build_decks

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "build" / "test-pages"  # ignored by git, like the screenshots beside it

SYNTHETIC_MARKDOWN = r"""# Lesson 99 · A synthetic lesson

The policy gradient $\nabla_\theta J = \mathbb{E}_{y\sim\pi_\theta}[R(y)\,\nabla_\theta \log\pi_\theta(y)]$ and a
displayed formula:

$$
\pi^*(y) = \frac{\pi_\text{ref}(y)\, e^{r(y)/\beta}}{Z}, \qquad \mathrm{KL}(\pi \,\|\, \pi_\text{ref}) \ge 0 .
$$

Dollars in code are not maths: `$x$`.
"""

SYNTHETIC_CODE = """%matplotlib inline
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 2.5))
ax.plot([0, 1, 2], [0, 1, 4])
ax.set_title("a figure")
plt.show()
print("cells ran")"""

README = """# test

## Lessons

| # | lesson | what it shows |
|---|---|---|
| 99 | `99_synthetic.ipynb` | a synthetic lesson: maths, a figure, printed output |
| 98 | `98_not_built.ipynb` | a lesson without a page |

## More
"""


def write_synthetic_lesson(folder: Path, failing: bool = False) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(SYNTHETIC_MARKDOWN), nbformat.v4.new_code_cell(SYNTHETIC_CODE)]
    if failing:
        nb.cells.append(nbformat.v4.new_code_cell("assert False, 'a failing cell'"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("97_failing.ipynb" if failing else "99_synthetic.ipynb")
    nbformat.write(nb, str(path))
    return path


def run_nbval(notebooks: list[Path], cache: Path) -> subprocess.CompletedProcess:
    """pytest + nbval on ``notebooks`` in a subprocess, with the site-cache plugin, as the repository's run does."""
    env = {**os.environ, "RLHFBOOK_SITE_CACHE": str(cache), "RLHFBOOK_FAST": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    folder = notebooks[0].parent
    (folder / "pytest.ini").write_text("[pytest]\n")  # this folder is its own rootdir: no repository settings
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                           "-p", "rlhfbook_lab.apps.nbval_cache", *map(str, notebooks)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=folder)


@functools.lru_cache(maxsize=1)
def synthetic_site() -> tuple[Path, Path, subprocess.CompletedProcess]:
    """(site folder, cache folder, the nbval run): a passing and a failing synthetic lesson run by nbval, then
    ``build_site(cached_only=True)`` on the passing one, as CI builds the real site after ``pytest``."""
    root = Path(tempfile.mkdtemp(prefix="rlhfbook-synthetic-"))  # outside the repository: no conftest, no ini
    atexit.register(shutil.rmtree, root, True)
    lessons, cache, site = root / "lessons", root / "cache", PAGES / "site"
    good, bad = write_synthetic_lesson(lessons), write_synthetic_lesson(lessons, failing=True)
    run = run_nbval([good, bad], cache)
    (root / "README.md").write_text(README)
    old = os.environ.get("RLHFBOOK_SITE_CACHE")
    os.environ["RLHFBOOK_SITE_CACHE"] = str(cache)
    try:
        build_site(site, lessons=["99"], cached_only=True, lessons_dir=lessons, readme=root / "README.md",
                   log=lambda *_: None)
    finally:
        if old is None:
            del os.environ["RLHFBOOK_SITE_CACHE"]
        else:
            os.environ["RLHFBOOK_SITE_CACHE"] = old
    return site, cache, run


@functools.lru_cache(maxsize=1)
def all_decks() -> dict[str, Path]:
    """Every deck in ``slides/`` built to HTML (no PDF): lesson number → page."""
    built = build_decks(PAGES / "slides", pdf=False, log=lambda *_: None)
    return {d.number: d.html for d in built}
