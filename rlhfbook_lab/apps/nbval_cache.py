"""A pytest plugin: every lesson that nbval executes with all its cells passing is stored, outputs and all, in the
static site's cache (:mod:`.site`), so ``rlhfbook-lab site`` after ``pytest`` renders without running the lessons a
second time. Registered in the repository's ``conftest.py``; it does nothing for a run without notebooks.

nbval runs each code cell as one test item (``IPyNbCell``) in a kernel shared by the notebook (``IPyNbFile``,
which holds the notebook it read as ``.nb``) and keeps the cell's outputs, as nbformat outputs, in
``item.test_outputs``. We collect them per notebook and write the executed notebook at the end of the session,
only when every code cell passed (a skipped or failed cell means an incomplete page, which is not cached).
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

_RUNS: dict[str, dict] = {}


def _is_nbval_cell(item) -> bool:
    return hasattr(item, "cell_num") and hasattr(item, "cell") and hasattr(item.parent, "nb")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _is_nbval_cell(item) and report.when in ("setup", "call"):
        run = _RUNS.setdefault(item.parent.nodeid, {"path": Path(str(item.parent.fspath)), "nb": item.parent.nb,
                                                    "outputs": {}, "complete": True})
        if report.when == "call" and report.passed:
            run["outputs"][item.cell_num] = list(getattr(item, "test_outputs", []))
        elif not report.passed:
            run["complete"] = False
    return report


def _output(out) -> nbformat.NotebookNode:
    kind = out["output_type"]
    if kind == "stream":
        return nbformat.v4.new_output("stream", name=out["name"], text=out["text"])
    if kind == "error":
        return nbformat.v4.new_output("error", ename=out["ename"], evalue=out["evalue"], traceback=out["traceback"])
    extra = {"execution_count": out.get("execution_count")} if kind == "execute_result" else {}
    return nbformat.v4.new_output(kind, data=out["data"], metadata=out.get("metadata", {}), **extra)


def executed_notebook(nb, outputs: dict[int, list]):
    """A copy of ``nb`` with the code cells' outputs and execution counts filled in (cell k: outputs[k])."""
    nb = copy.deepcopy(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for k, cell in enumerate(code_cells):
        cell.outputs = [_output(o) for o in outputs[k]]
        cell.execution_count = k + 1
    return nb


def pytest_sessionfinish(session):
    if not _RUNS:
        return
    # deferred (torch): only a run that executed notebooks needs them; this plugin loads with every pytest
    from rlhfbook_lab.apps.site import store_executed
    from rlhfbook_lab.lesson import fast_mode  # deferred, as above

    mode = "fast" if fast_mode() else "full"
    for run in _RUNS.values():
        n_code = sum(c.cell_type == "code" for c in run["nb"].cells)
        if run["complete"] and len(run["outputs"]) == n_code:
            store_executed(run["path"], mode, executed_notebook(run["nb"], run["outputs"]))
    _RUNS.clear()
