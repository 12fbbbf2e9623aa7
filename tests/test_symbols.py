"""The lessons use one symbol for one thing (issue 15, item 4). Reserved symbols, across every lesson and solutions
file:

- ``G``: the **group size**, the number of samples of one prompt that share a baseline (GRPO, RLOO, Dr. GRPO; the
  package's ``group_size``, ``sample_groups(k=...)``). Code binding a group size binds ``G``; prose writes ``$G$``.
- ``τ``: **Kendall's τ** (lessons 10, 16), or the τ a paper names in its own loss or filter (IPO's τ in 08,
  Toolformer's threshold in 13). Never the annotators' temperature.
- ``s``: the **annotator's noise scale** (its temperature) in P(a ≻ b) = σ(Δu/s); the package field keeps the
  name ``world.Annotator.tau``, so the identifiers ``tau=`` and ``.tau`` in code are the API, not the symbol.
- ``r``: a **reward**. Code never binds ``r`` to a run's report.

The checks read text line by line with regular expressions: they catch the known ways of breaking a rule (written
below, each with a line it must flag), not every conceivable one.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "lessons" / "solutions").glob("*.py"))

TAU = r"(?:τ|\\tau)"
RULES = {
    # the annotator's temperature written τ: τ on a line that speaks of an annotator / Bradley-Terry noise, or τ as a
    # divisor of a utility gap (σ(Δu/τ)); identifiers (`tau=`, `.tau`) are not the symbol
    "annotator temperature is s, not τ": re.compile(
        rf"(?i)(?:annotator|bradley|nois|labell).*{TAU}|{TAU}.*(?:annotator|bradley|nois|labell)|/\s*{TAU}(?![\w])"),
    # a group size bound to another name than G
    "the group size is G": re.compile(
        r"^\s*(?!G\b)([A-Za-z_]\w*)\s*=\s*(?:len\(groups?\)|[\w.]*group_size|groups?\.k)\s*(?:#.*)?$"
        r"|\$(?!G\$)[A-Za-z]\$ samples against its group|whose \$(?!G\$)[A-Za-z]\$ samples"),
    # r re-bound to a report
    "r is a reward, not a report": re.compile(r"^\s*(?:for\s+r\s+in\s+.*report|r\s*=\s*(?!=).*\breport\b)"),
}
BAD = {
    "annotator temperature is s, not τ": ["the `gold` annotator (Bradley-Terry, τ = 0.1) labels both",
                                          r"$p = \sigma(\Delta u/\tau)$"],
    "the group size is G": ["K = len(group)", "k = groups.k", "n = cfg.group_size  # samples per prompt",
                            "scores each of $k$ samples against its group"],
    "r is a reward, not a report": ["r = run.report", "for r in reports:"],
}
GOOD = {
    "annotator temperature is s, not τ": ["Kendall's τ counts the pairs", "IPO's τ = 0.5",
                                          'world.Annotator("noisy", tau=0.4)', "σ(Δu/s) with s = 0.1"],
    "the group size is G": ["G = len(group)", "G = groups.k", "N_GROUPS, G = pick(2000, 10_000), cfg.group_size"],
    "r is a reward, not a report": ["r = rewards[i]", "report = run.report", "for r in rows:"],
}


def _lines(path: Path):
    """(where, line) for every line of a lesson's cells (markdown and code) or of a solutions file."""
    if path.suffix == ".ipynb":
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for n, line in enumerate(src.splitlines(), 1):
                yield f"{path.name} cell {i} line {n}", line
    else:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            yield f"{path.name}:{n}", line


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_flags_its_known_violations_and_spares_the_allowed_uses(rule):
    assert all(RULES[rule].search(line) for line in BAD[rule]), [b for b in BAD[rule] if not RULES[rule].search(b)]
    assert not any(RULES[rule].search(line) for line in GOOD[rule]), [g for g in GOOD[rule] if RULES[rule].search(g)]


def test_lessons_and_solutions_are_found():
    assert len(LESSONS) >= 10 and len(SOLUTIONS) >= 10


@pytest.mark.parametrize("rule", RULES)
def test_lessons_keep_the_reserved_symbols(rule):
    broken = [f"{where}: {line.strip()[:120]}" for path in LESSONS + SOLUTIONS for where, line in _lines(path)
              if RULES[rule].search(line)]
    assert not broken, f"{rule} (see this file's docstring):\n" + "\n".join(broken)
