"""Time every lesson, cell by cell: the README's fast/full columns and the instructors' "heavy cells" come from here.

    python benchmarks/lesson_times.py                  # fast mode, every lesson
    python benchmarks/lesson_times.py --full 05 08     # full mode, lessons 05 and 08

For each lesson it prints the wall time, the CPU time of the kernel (user + system, read from the kernel's
process; on a busy machine wall time grows while CPU time does not), and the three slowest cells with their first
line. Run on an otherwise idle machine for wall times worth quoting.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def time_lesson(path: Path, full: bool, timeout: int = 3600) -> dict:
    nb = nbformat.read(path, as_version=4)
    env_fast = os.environ.get("RLHFBOOK_FAST")
    os.environ["RLHFBOOK_FAST"] = "0" if full else "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    cells = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                t0 = time.perf_counter()
                client.execute_cell(cell, i)
                cells.append((time.perf_counter() - t0, i, (cell.source.strip().splitlines() or [""])[0][:70]))
    finally:
        if env_fast is None:
            os.environ.pop("RLHFBOOK_FAST", None)
        else:
            os.environ["RLHFBOOK_FAST"] = env_fast
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel is a child process, reaped at shutdown
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"lesson": path.name, "wall_s": wall, "cpu_s": cpu, "heaviest": sorted(cells, reverse=True)[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    parser.add_argument("--full", action="store_true", help="full mode (default: fast mode, as CI runs them)")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if p.name[:2] in args.lessons]
    print(f"{'full' if args.full else 'fast'} mode, {os.cpu_count()} CPUs")
    for path in paths:
        r = time_lesson(path, args.full)
        heavy = "; ".join(f"cell {i} {t:.0f} s `{line}`" for t, i, line in r["heaviest"])
        print(f"{r['lesson']}: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} CPU-s — heaviest: {heavy}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
