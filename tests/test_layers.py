"""The package's floors, read from its source (AST only, nothing imported): an import points down or sideways
within a floor, never up; trainers never import each other; the ground floor stays pure.

    0  paths.py, checks.py, config.py, __init__.py    where the data lives; shared argument checks; configs
    1  equations/  (tensor maths)   world/  (the toy world: pure Python)
    2  lm/         language models and their data
    3  trainers/   the shared loop (loop.py) and one module or subpackage per algorithm
    4  recipes/    experiments that chain trainers (the pipeline, ...)
    5  cli.py, lesson.py, apps/, __main__.py    front doors

A newcomer adding a chapter puts its equations in ``equations/``, anything about the world in ``world/``, a new
trainer in ``trainers/``, a study that runs several trainers in ``recipes/``.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "rlhfbook_lab"
FLOORS = {"paths": 0, "checks": 0, "config": 0, "__init__": 0, "equations": 1, "world": 1, "lm": 2, "trainers": 3,
          "recipes": 4, "cli": 5, "lesson": 5, "apps": 5, "__main__": 5}
SHARED_TRAINER = "loop"  # the one trainer module every trainer may import
MODEL_LIBRARIES = ("transformers", "datasets", "tokenizers", "safetensors", "accelerate")
NUMERIC_LIBRARIES = ("torch", "numpy", "scipy", "pandas")


def modules():
    return sorted(p for p in PKG.rglob("*.py"))


def dotted(path: Path, root: Path = PKG) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(name: str) -> tuple[int, str]:
    """(floor, unit) of a dotted module name inside the package; unit is the top folder or module, and for
    trainers the trainer (module or subpackage) name."""
    parts = name.split(".")[1:]
    if not parts:
        return 0, "__init__"
    top = parts[0]
    if top not in FLOORS:
        raise AssertionError(f"rlhfbook_lab.{top} is on no floor: add it to FLOORS (and to the README's layers)")
    unit = f"trainers.{parts[1]}" if top == "trainers" and len(parts) > 1 else top
    return FLOORS[top], unit


def imports(path: Path, root: Path = PKG):
    """(node, absolute module name) for every import in the module, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = dotted(path, root)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            if mod == "rlhfbook_lab" or (node.level and not node.module):
                for alias in node.names:  # `from rlhfbook_lab import world`: the submodule is what is imported
                    yield node, f"{mod}.{alias.name}"
            else:
                yield node, mod


def layer_violations(path: Path, root: Path = PKG) -> list[str]:
    """Every import of ``path`` that breaks the floors, as readable lines."""
    me = dotted(path, root)
    my_floor, my_unit = floor_of(me)
    bad = []
    for node, mod in imports(path, root):
        top = mod.split(".")[0]
        if my_unit in ("equations", "world"):
            forbidden = MODEL_LIBRARIES + (NUMERIC_LIBRARIES if my_unit == "world" else ())
            if top in forbidden:
                bad.append(f"line {node.lineno}: {me} imports {mod}: the ground floor stays pure")
        if top != "rlhfbook_lab":
            continue
        floor, unit = floor_of(mod)
        if floor > my_floor:
            bad.append(f"line {node.lineno}: {mod} is on floor {floor}, above {me} (floor {my_floor})")
        if my_unit.startswith("trainers.") and unit.startswith("trainers.") and unit != my_unit \
                and unit != f"trainers.{SHARED_TRAINER}":
            bad.append(f"line {node.lineno}: trainer {my_unit} imports trainer {unit}: move what both need down "
                       "(lm/forward.py, lm/data.py or trainers/loop.py)")
        if my_unit in ("equations", "world") and unit in ("equations", "world") and unit != my_unit:
            bad.append(f"line {node.lineno}: {me} imports {mod}: the maths and the world stay independent")
        if isinstance(node, ast.ImportFrom) and mod != me:
            bad += [f"line {node.lineno}: private name {a.name} imported from {mod}" for a in node.names
                    if a.name.startswith("_") and a.name != "__future__"]
    return bad


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down_and_the_ground_floor_is_pure(path):
    assert not (bad := layer_violations(path)), "\n".join(bad)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_sit_at_the_top(path):
    """An import inside a function needs a reason written on its line or the line above (``# deferred: ...``): a
    cycle to break, or an optional heavy library that only that function needs."""
    src = path.read_text(encoding="utf-8")
    lines = src.splitlines()
    inner = [sub for node in ast.walk(ast.parse(src)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))]
    bad = [f"line {n.lineno}: {lines[n.lineno - 1].strip()}" for n in inner
           if "# deferred" not in lines[n.lineno - 1] and "# deferred" not in lines[n.lineno - 2]]
    assert not bad, "\n".join(bad)


def test_every_folder_is_on_a_floor():
    for p in PKG.iterdir():
        if p.name.startswith((".", "__pycache__")) or p.suffix not in ("", ".py"):
            continue
        floor_of(f"rlhfbook_lab.{p.stem}")


@pytest.mark.parametrize("where, source, expected", [
    ("trainers/sft.py", "from rlhfbook_lab.trainers.dpo import train_dpo\n", "imports trainer trainers.dpo"),
    ("trainers/sft.py", "from rlhfbook_lab.recipes.pipeline import run_pipeline\n", "above"),
    ("world/tasks.py", "import torch\n", "ground floor stays pure"),
    ("equations/kl.py", "from transformers import AutoModel\n", "ground floor stays pure"),
    ("equations/kl.py", "from rlhfbook_lab import world\n", "independent"),
    ("lm/data.py", "from rlhfbook_lab.lm.models import _private\n", "private name"),
    ("lm/data.py", "from ..trainers import loop\n", "above"),
])
def test_the_checker_catches_each_kind_of_violation(tmp_path, where, source, expected):
    """The checks can fail: a fake package with one bad import of each kind."""
    fake = tmp_path / "rlhfbook_lab" / where
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    bad = layer_violations(fake, tmp_path / "rlhfbook_lab")
    assert len(bad) == 1 and expected in bad[0], bad


# ---------------------------------------------------------------------------------------------------------
# modules and functions that read in one sitting (issue #15): ~600 lines a module, ~80 a function, or a reason
# ---------------------------------------------------------------------------------------------------------
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 600, 80


def _too_long(tree: ast.Module, src: str, path: Path) -> list[str]:
    """The module (over MAX_MODULE_LINES) and functions (over MAX_FUNCTION_LINES, docstring included) of one file
    that do not say why they are long: a "Why one module" / "Why one function" paragraph in their docstring."""
    out = []
    n_lines = len(src.splitlines())
    if n_lines > MAX_MODULE_LINES and "Why one module" not in (ast.get_docstring(tree) or ""):
        out.append(f"{path}: {n_lines} lines")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and "Why one function" not in (ast.get_docstring(node) or ""):
                out.append(f"{path}:{node.lineno} {node.name}: {length} lines")
    return out


def test_long_modules_and_functions_say_why():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        src = path.read_text()
        bad += _too_long(ast.parse(src), src, path.relative_to(PKG.parent))
    assert not bad, ("split these, or write why they are long at their top ('Why one module (~N lines): ...' in the "
                     "module docstring, 'Why one function ...' in the function's):\n" + "\n".join(bad))


def test_the_length_rule_can_fail():
    long_function = "def f():\n    '''Short.'''\n" + "    x = 1\n" * 90
    assert _too_long(ast.parse(long_function), long_function, Path("m.py")) == ["m.py:1 f: 92 lines"]
    explained = long_function.replace("Short.", "Why one function: a reason.")
    assert _too_long(ast.parse(explained), explained, Path("m.py")) == []
    long_module = "'''A module.'''\n" + "x = 1\n" * 700
    assert _too_long(ast.parse(long_module), long_module, Path("m.py")) == ["m.py: 701 lines"]
