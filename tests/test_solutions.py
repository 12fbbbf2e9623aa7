"""Every lesson's solutions file (`lessons/solutions/*.py`) runs top to bottom in fast mode and asserts its claims.

Marked ``solutions`` and left out of the default `pytest` (``-m "not solutions"`` in pyproject's addopts): together
they cost about as much CPU as the lessons themselves, and the default run must stay within 10 minutes on 2 cores.
Run them with ``pytest tests/test_solutions.py -m solutions --dist load`` (CI's step after the main `pytest`,
``.ci/run``): ``--dist load`` spreads the files over the xdist workers, where pyproject's ``loadscope`` would put
this one module on one worker. A new solutions file is picked up by its name.
"""

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "lessons" / "solutions").glob("*_solutions.py"))
BUDGET_CPU_S = 120  # the target is the lessons' ≈ 75 CPU-s, which every file meets (each run prints its own:
# `pytest -m solutions -rP`); the margin is for slower CPUs. 05's and 15's training exercises read shipped results
# in fast mode (`data/solutions/`), each written by its file's `--write` (the file's header gives the command)
NOT_YET_ASSERTING: set[str] = set()  # files whose claims are prose only, so far: each to be asserted
TIMEOUT_S = 1800  # wall: generous, the machine may be shared (the CPU budget below is the real limit)


def test_solutions_are_found():
    assert SOLUTIONS, "no lessons/solutions/*_solutions.py found"


@pytest.mark.solutions
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name.split("_")[0])
def test_solution_runs_in_fast_mode_and_asserts(path, tmp_path):
    asserts = re.search(r"^\s*(assert\b|[\w.]*assert\w*\()", path.read_text(), re.MULTILINE) is not None
    if path.name[:2] in NOT_YET_ASSERTING:
        assert not asserts, f"{path.name} asserts now: take {path.name[:2]} off NOT_YET_ASSERTING"
    else:
        assert asserts, f"{path.name} asserts nothing: each claim its prose makes should be an assert, so it can fail"
    env = {**os.environ, "RLHFBOOK_FAST": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, f"{path.name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    print(f"{path.name}: {cpu:.0f} CPU s")
    assert cpu <= BUDGET_CPU_S, f"{path.name} took {cpu:.0f} CPU s in fast mode (budget {BUDGET_CPU_S})"
