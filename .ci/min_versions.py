"""Print the lowest released versions that pyproject.toml allows, one `name==version` per line, for CI's
minimum-versions check: for every `name>=X` among the dependencies and the dev and bench extras, the lowest release
>= X on the package index (`pip index versions`; pre-releases skipped). A requirement without a `>=` lower bound is
an error: its lowest version is not defined.
Usage: python .ci/min_versions.py > build/min-versions.txt"""

import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def release(text: str) -> tuple[int, ...] | None:
    """(2, 4, 0) for '2.4.0' or '2.4'; None for a pre-release or anything else ('1.0.0rc1')."""
    return tuple(int(p) for p in text.split(".")) if re.fullmatch(r"\d+(\.\d+)*", text) else None


def lowest(name: str, bound: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True,
                         check=True).stdout
    listed = re.search(r"Available versions: (.*)", out)
    if not listed:
        sys.exit(f"min_versions: pip lists no versions of {name}")
    low = release(bound)
    found = sorted(v for v in (release(t.strip()) for t in listed.group(1).split(",")) if v and v >= low)
    if not found:
        sys.exit(f"min_versions: no release of {name} >= {bound}")
    return ".".join(map(str, found[0]))


project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = project["dependencies"] + project["optional-dependencies"]["dev"] + \
    project["optional-dependencies"]["bench"]
bounds = []
for requirement in requirements:
    found = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)\s*", requirement)
    if not found:
        sys.exit(f"min_versions: {requirement!r} has no `>=` lower bound")
    bounds.append(found.groups())
with ThreadPoolExecutor(8) as pool:
    versions = list(pool.map(lambda b: lowest(*b), bounds))
for (name, _), version in zip(bounds, versions):
    print(f"{name}=={version}")
