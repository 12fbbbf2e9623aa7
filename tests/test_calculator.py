"""Tests for rlhfbook_lab.world.calculator: known values, a second evaluator that agrees (Python's own integer
arithmetic over the ``ast`` of generated expressions), properties over hostile inputs, and the module's source."""

from __future__ import annotations

import ast
import random
import re
import time
from pathlib import Path

import pytest

from rlhfbook_lab.world import calculator as calculator_module
from rlhfbook_lab.world.calculator import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_OPERAND_DIGITS,
    MAX_OPERATORS,
    MAX_RESULT_DIGITS,
    TOOL_NAME,
    TOOLS,
    calculator,
    run_tool_call,
)

INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
MAX_SECONDS_PER_CALL = 0.050  # generous: a call takes microseconds; this holds on a slow, busy CI machine
MAX_RESULT_CHARS = 80


def check_output(result: str) -> None:
    """Every result is a plain decimal integer within bounds, or a short printable-ASCII ``error: `` string."""
    assert type(result) is str
    assert len(result) <= MAX_RESULT_CHARS, result
    assert result.isascii() and result.isprintable(), ascii(result)
    if not result.startswith("error: "):
        assert INTEGER.fullmatch(result), result
        assert len(result.lstrip("-")) <= MAX_RESULT_DIGITS


def timed(expression) -> tuple[str, float]:
    """The result and the CPU seconds the call took (CPU time: other workers on the machine do not inflate it)."""
    start = time.process_time()
    result = calculator(expression)
    return result, time.process_time() - start


# --- hand-computed values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, expected", [
    ("2+3*4", "14"),
    ("(2+3)*4", "20"),
    ("-3*-3", "9"),
    ("17 + 25", "42"),
    ("123 * 45", "5535"),
    ("2*3+4", "10"),
    ("10-4-3", "3"),  # left-associative
    ("10-(4-3)", "9"),
    ("-5", "-5"),
    ("--5", "5"),
    ("2--3", "5"),
    ("2*-3", "-6"),
    ("-(2+3)*2", "-10"),
    ("  7  ", "7"),
    ("0", "0"),
    ("-0", "0"),
    ("007", "7"),
    ("3-10", "-7"),
    ("((((((((1))))))))", "1"),  # exactly MAX_DEPTH levels
    ("999999*999999", "999998000001"),  # the largest product of two operands: 12 digits, allowed
    ("999999999999", "error: number too long (more than 6 digits)"),
    ("2\u22123", "-1"),  # unicode minus sign
    ("6\u00d77", "42"),  # multiplication sign
    ("\u22124\u00d7\u22124", "16"),
])
def test_known_values(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize("expression, expected", [
    ("", "error: empty expression"),
    ("   ", "error: empty expression"),
    ("x", "error: unknown character 'x'"),
    ("2/3", "error: unknown character '/'"),
    ("1.5+1", "error: unknown character '.'"),
    ("2\t+3", "error: unknown character '\\t'"),
    ("1\x00", "error: unknown character '\\x00'"),
    ("\u0663+1", "error: unknown character '\\u0663'"),  # Arabic-Indic three: str.isdigit() says True
    ("\uff13", "error: unknown character '\\uff13'"),  # fullwidth three
    ("1" * 70, f"error: expression too long (70 > {MAX_EXPRESSION_CHARS} characters)"),
    ("1234567", f"error: number too long (more than {MAX_OPERAND_DIGITS} digits)"),
    ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
     f"error: too deeply nested (more than {MAX_DEPTH} parentheses)"),
    ("1" + "+1" * (MAX_OPERATORS + 1), f"error: too many operators (more than {MAX_OPERATORS})"),
    ("(1", "error: unbalanced parentheses"),
    ("1)", "error: unbalanced parentheses"),
    (")(", "error: unbalanced parentheses"),
    ("2+", "error: unexpected end of expression"),
    ("-", "error: unexpected end of expression"),
    ("()", "error: unexpected ')' at character 2"),
    ("2 3", "error: unexpected '3' at character 3"),
    ("+3", "error: unexpected '+' at character 1"),
    ("2(3)", "error: unexpected '(' at character 2"),
    ("(2)(3)", "error: unexpected '(' at character 4"),
    ("9**9", "error: unexpected '*' at character 3"),
    ("999999*999999*9", f"error: result too large (more than {MAX_RESULT_DIGITS} digits)"),
    ("-999999*999999*-9", f"error: result too large (more than {MAX_RESULT_DIGITS} digits)"),
    ("999999*999999+999999*999999", f"error: result too large (more than {MAX_RESULT_DIGITS} digits)"),
    # an intermediate value out of range is refused even when the final one would fit
    ("999999*999999*10-999999*999999*10", f"error: result too large (more than {MAX_RESULT_DIGITS} digits)"),
])
def test_error_messages(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize("bad", [None, b"1+1", bytearray(b"1"), 42, 3.5, ["1", "+", "1"], {"expression": "1"}])
def test_non_text_input_returns_an_error(bad):
    result = calculator(bad)
    assert result.startswith("error: expected the expression as text, got ")
    check_output(result)


def test_str_subclass_cannot_bypass_the_length_check():
    class Lying(str):
        def __len__(self):
            return 1

        def __iter__(self):
            return iter("1")

    assert calculator(Lying("1+" * 1000 + "1")).startswith("error: expression too long")
    assert calculator(Lying("2*3")) == "6"


def test_run_tool_call_dispatches_by_name():
    assert TOOL_NAME == "calculator" and TOOLS[TOOL_NAME] is calculator
    assert run_tool_call("calculator", "17 + 25") == "42"
    assert run_tool_call("calculator", "1/0") == "error: unknown character '/'"
    assert run_tool_call("calculator", None).startswith("error: ")
    assert run_tool_call("x", "1") == "error: unknown tool 'x'"
    assert run_tool_call("Calculator", "1") == "error: unknown tool 'Calculator'"
    assert run_tool_call(None, "1") == "error: expected the tool name as text, got 'NoneType'"
    # a hostile name is escaped to printable ASCII and cut, whatever its length
    assert run_tool_call("a'b\\", "1") == "error: unknown tool 'a\\'b\\\\'"
    assert run_tool_call("x" * 30, "1") == "error: unknown tool '" + "x" * 24 + "...'"
    assert run_tool_call("\x00" * 10**6, "1") == "error: unknown tool '" + "\\x00" * 6 + "...'"
    with pytest.raises(TypeError):  # the registry is read-only: nothing can add a tool at run time
        TOOLS["os"] = print


def test_deterministic():
    for expression in ("2+3*4", "999999*999999*9", "\u0663", "(" * 20):
        assert calculator(expression) == calculator(expression)


# --- a second implementation: Python's exact integers over the ast of generated expressions ----------------------

def random_expression(rng: random.Random, depth: int) -> str:
    """A random expression of the calculator's grammar (aliases, spaces and redundant parentheses included)."""
    space = lambda: " " * rng.choice((0, 0, 0, 1, 2))  # noqa: E731
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        digits = rng.randint(1, MAX_OPERAND_DIGITS) if rng.random() < 0.97 else MAX_OPERAND_DIGITS + 1
        number = str(rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1))
        return number if rng.random() < 0.8 else "-" + space() + number
    if roll < 0.4:
        return "(" + space() + random_expression(rng, depth - 1) + space() + ")"
    if roll < 0.5:
        return rng.choice("-\u2212") + space() + "(" + random_expression(rng, depth - 1) + ")"
    op = rng.choice(("+", "-", "*", "*", "\u2212", "\u00d7"))
    left, right = random_expression(rng, depth - 1), random_expression(rng, depth - 1)
    if rng.random() < 0.5:
        right = "(" + right + ")"
    return left + space() + op + space() + right


def within_bounds(expression: str) -> bool:
    """The bounds as this test reads the specification, counted independently of the module."""
    depth = max_depth = 0
    for char in expression:
        depth += (char == "(") - (char == ")")
        max_depth = max(max_depth, depth)
    runs = re.findall(r"[0-9]+", expression)
    return (len(expression) <= MAX_EXPRESSION_CHARS and max_depth <= MAX_DEPTH
            and sum(expression.count(op) for op in "+-*\u2212\u00d7") <= MAX_OPERATORS
            and all(len(run) <= MAX_OPERAND_DIGITS for run in runs))


class OutOfRange(Exception):
    pass


def reference(expression: str) -> str:
    """Python's own parse and exact integer arithmetic, with the same bound on every intermediate value."""
    tree = ast.parse(expression.replace("\u2212", "-").replace("\u00d7", "*"), mode="eval")
    limit = 10**MAX_RESULT_DIGITS

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            value = node.value
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = -walk(node.operand)
        elif isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult):
            left, right = walk(node.left), walk(node.right)
            value = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}[type(node.op)]
        else:
            raise AssertionError(f"the generator wrote something outside the grammar: {ast.dump(node)}")
        if abs(value) >= limit:
            raise OutOfRange
        return value

    try:
        return str(walk(tree.body))
    except OutOfRange:
        return f"error: result too large (more than {MAX_RESULT_DIGITS} digits)"


def test_agrees_with_python_integer_arithmetic():
    rng = random.Random(0)
    valid = too_long = too_large = other = 0
    for _ in range(4000):
        expression = random_expression(rng, depth=rng.randint(0, 5))
        if rng.random() < 0.15:  # stretch towards the depth and operator bounds
            wraps = rng.randint(1, MAX_DEPTH + 1)
            expression = "-" * rng.randint(0, 12) + "(" * wraps + expression + ")" * wraps
        result = calculator(expression)
        check_output(result)
        if within_bounds(expression):
            assert result == reference(expression), expression
            valid += 1
            too_large += result.startswith("error: result too large")
        elif len(expression) > MAX_EXPRESSION_CHARS:
            assert result.startswith("error: expression too long"), expression
            too_long += 1
        else:  # within the length but past another bound (depth, operators, digits)
            assert result.startswith("error: ") and not result.startswith("error: unexpected"), expression
            other += 1
    # the generator reaches every outcome, or this test could pass vacuously
    assert valid > 1000 and too_large > 50 and too_long > 50 and other > 50, (valid, too_large, too_long, other)


# --- properties: hostile input, any input -----------------------------------------------------------------------

SECURITY_INPUTS = [
    "__import__('os').system('echo hi')",
    "9**9**9",
    "(" * 10_000 + "1" + ")" * 10_000,
    "9" * 10**6,
    "1" + "+1" * 10**6,
    "open('/etc/passwd').read()",
    "(lambda: 1)()",
    "exec('import os')",
    "eval('1+1')",
    "().__class__.__bases__[0].__subclasses__()",
    "1 if True else 2",
    "1;2",
    "1\n+1",
    "0x10",
    "1_000",
    "1e9",
    "10**100",
    "999999" + "*999999" * 10,
    "-" * 64,
    "-" * 10**6 + "1",
    "\x00" * 10**6,
]


@pytest.mark.parametrize("index", range(len(SECURITY_INPUTS)))
def test_hostile_inputs_return_errors_fast(index):
    result, seconds = timed(SECURITY_INPUTS[index])
    assert result.startswith("error: "), result
    check_output(result)
    assert seconds < MAX_SECONDS_PER_CALL, seconds


def fuzz_inputs(rng: random.Random) -> list:
    """≥ 10,000 strings from several hostile distributions."""
    alphabet = "0123456789+-*() \u2212\u00d7"
    near = alphabet + "/.^%xe_\t\n\x00\u0663\uff13\u00b2"
    snippets = ["__import__('os')", "os.system", "lambda", "exec(", "eval(", "open(", "**", "//", "9" * 20,
                "(" * 9, ")" * 9, "\u2212", "\u00d7", "\U0001f600", "\ud800"]  # emoji, lone surrogate
    inputs: list = []
    for _ in range(3000):  # grammatical expressions with 0-3 random one-character edits: valid or nearly
        chars = list(random_expression(rng, depth=rng.randint(0, 4)))
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            at = rng.randrange(len(chars) + 1)
            edit = rng.choice(("insert", "delete", "replace"))
            if edit == "insert" or at == len(chars):
                chars.insert(at, rng.choice(near))
            elif edit == "delete":
                del chars[at]
            else:
                chars[at] = rng.choice(near)
        inputs.append("".join(chars))
    for _ in range(1000):  # mixes of the calculator's own characters
        inputs.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 70))))
    for _ in range(2000):  # near-misses: a few foreign characters among the right ones
        inputs.append("".join(rng.choice(near) for _ in range(rng.randint(1, 70))))
    for _ in range(1500):  # random bytes decoded as latin-1 and UTF-8
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 100)))
        inputs.append(raw.decode("latin-1") if rng.random() < 0.5 else raw.decode("utf-8", errors="replace"))
    for _ in range(1500):  # random code points, any plane
        inputs.append("".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 40))))
    for _ in range(1500):  # snippets of code, huge numbers, deep nesting
        inputs.append("".join(rng.choice(snippets + list(alphabet)) for _ in range(rng.randint(1, 12))))
    for n in range(0, 200, 2):  # long and very long strings around and far past the length bound
        inputs += ["1" * n, "(" * n + "1" + ")" * n, "1+" * n + "1", "-" * n + "1", "9" * (n * 1000)]
    return inputs


def test_fuzz_never_raises_and_stays_fast():
    inputs = fuzz_inputs(random.Random(1))
    assert len(inputs) >= 10_000
    slowest = 0.0
    errors = 0
    for expression in inputs:
        result, seconds = timed(expression)
        check_output(result)
        slowest = max(slowest, seconds)
        errors += result.startswith("error: ")
    assert slowest < MAX_SECONDS_PER_CALL, slowest
    assert len(inputs) - errors > 0.10 * len(inputs)  # many inputs reach the evaluator, not only the scanner


def test_only_ascii_digits_are_digits():
    for code_point in range(0x110000):
        char = chr(code_point)
        if char.isdigit() and not ("0" <= char <= "9"):
            assert calculator(char).startswith("error: unknown character"), ascii(char)
            assert calculator("1" + char).startswith("error: unknown character"), ascii(char)


# --- the module's source: nothing that can run code ----------------------------------------------------------------

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "open", "getattr", "setattr", "globals", "locals",
                   "vars", "input", "breakpoint", "literal_eval", "system", "popen", "int", "float"}
ALLOWED_IMPORTS = {"__future__", "types"}


def test_module_source_runs_no_code():
    source = Path(calculator_module.__file__).read_text()
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            assert name not in FORBIDDEN_CALLS, f"calculator.py calls {name}() at line {node.lineno}"
    assert imported <= ALLOWED_IMPORTS, imported
    for text in ("eval(", "exec(", "compile(", "__import__", "subprocess", "os.system"):
        assert text not in source, text


def test_source_check_would_catch_a_forbidden_call():
    """The checker itself can fail: run on a snippet that does what the module must not."""
    tree = ast.parse("import os\nresult = eval(text)\n")
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)}
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert calls & FORBIDDEN_CALLS == {"eval"} and not imports <= ALLOWED_IMPORTS
