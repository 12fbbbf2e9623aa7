"""The calculator tool (book chapter 13, Tool Use and Function Calling): integer arithmetic the model can call.

The model writes a call mid-reply, generation hands the call's text to :func:`run_tool_call`, and the result
string goes back into the context for the model to read. This is the first code path that *acts on model
output*, so it treats its input as hostile: it never evaluates code, and every input, however long, odd or
malicious, gets an answer string in bounded time. It never raises (a bad call is something the model should read
and recover from, not a crash of the generation loop).

**The language.** Integers written with the ASCII digits ``0-9``; binary ``+``, ``-`` and ``*`` (``*`` binds
tighter, both left-associative); unary minus (``-3*-3`` is 9; ``--3`` is 3); parentheses; spaces. Two aliases
that models and people type: ``−`` (U+2212, minus sign) for ``-`` and ``×`` (U+00D7) for ``*``. Nothing else:
no division, no power, no unary plus, no decimals, no names, no other whitespace, no non-ASCII digits (Python's
``str.isdigit`` accepts ``'٣'`` and ``'３'``; this module compares against ``'0'..'9'`` only). Leading zeros
are allowed (``007`` is 7) and count towards an operand's digits.

**How.** A hand-written scanner turns the text into tokens (one pass, checking every bound as it goes), then a
recursive-descent parser evaluates them::

    expression := term (('+' | '-') term)*
    term       := unary ('*' unary)*
    unary      := '-'* primary
    primary    := NUMBER | '(' expression ')'

No ``eval``, ``exec``, ``compile``, ``ast``, regular expressions or ``int()`` on the text; the module imports
nothing that can run code (``tests/test_calculator.py`` checks its imports and calls with ``ast``).

**Bounds** (module constants below), all checked before any arithmetic that could be big: the text's length
first (so a megabyte of input costs one ``len``), then characters, operand digits, nesting depth and operator
count during the scan, then every intermediate value during evaluation: a product is refused *before* it is
computed when it would leave :data:`MAX_RESULT_DIGITS`, so no value in a computation ever has more than 12 digits
and a call costs time linear in at most :data:`MAX_EXPRESSION_CHARS` characters (microseconds).

**Results.** Success: the integer in plain decimal (``"42"``, ``"-42"``). Failure: a string starting with
``"error: "`` and a short reason, e.g. ``error: unknown character 'x'``, ``error: expression too long (70 > 64
characters)``, ``error: unbalanced parentheses``. Every result is printable ASCII (an offending character is
shown escaped, ``'\\x00'``, ``'\\u0663'``) and at most a few dozen characters long.

**The call convention.** A tool is a function ``str -> str`` registered in :data:`TOOLS` under its name;
:func:`run_tool_call(name, arguments) <run_tool_call>` is generation's one entry point. For the calculator the
arguments are the expression's text itself (``run_tool_call("calculator", "17 + 25")`` is ``"42"``), not JSON:
the simplest thing a tiny model can learn to write. How a call and its result are rendered in the chat text
(delimiters, special tokens) belongs to the chat template in the tokenizer, not here.
"""

from __future__ import annotations

from types import MappingProxyType

MAX_EXPRESSION_CHARS = 64
"""Longest expression accepted, in characters (spaces included). Checked first, before the text is read, so
every other step works on at most this many characters."""

MAX_OPERAND_DIGITS = 6
"""Most digits in one written number (leading zeros included): operands are below 1,000,000."""

MAX_DEPTH = 8
"""Most parentheses open at once. It also bounds the parser's recursion (four Python frames per level)."""

MAX_OPERATORS = 16
"""Most operators in one expression, unary minus and both aliases included."""

MAX_RESULT_DIGITS = 12
"""Most digits in the result *and in every intermediate value*: a product that would leave the range is refused
before it is computed, a sum (at most one digit more) right after; ``999999*999999*10-999999*999999*10`` is an
error although its value, 0, would fit."""

_MAX_MAGNITUDE = 10**MAX_RESULT_DIGITS - 1
_MAX_SHOWN_CHARS = 24  # the most characters of hostile text (a tool name, a type name) an error message repeats

_ALIASES = {"\u2212": "-", "\u00d7": "*"}  # minus sign, multiplication sign
_OPERATORS = frozenset("+-*")


class _CalcError(Exception):
    """Internal: carries an error reason up to :func:`calculator`, which turns it into an ``error: ...`` string."""


def _shown(text: str) -> str:
    """``text`` quoted and escaped to printable ASCII (``'x'``, ``'\\x00'``, ``'\\u0663'``), safe to put in a reply.

    At most :data:`_MAX_SHOWN_CHARS` characters *after* escaping (then ``...``): a hostile name cannot flood the
    model's context, however long it is.
    """
    shown = ""
    for char in text[:_MAX_SHOWN_CHARS]:  # cut before escaping, so a megabyte of input costs nothing
        if " " <= char <= "~" and char not in "'\\":
            escaped = char
        else:
            escaped = "\\'" if char == "'" else ascii(char)[1:-1]  # '\\x00', '\\u0663', '\\\\'
        if len(shown) + len(escaped) > _MAX_SHOWN_CHARS:
            return f"'{shown}...'"
        shown += escaped
    return f"'{shown}...'" if len(text) > _MAX_SHOWN_CHARS else f"'{shown}'"


def _tokenize(text: str) -> list[tuple[str, int, int]]:
    """Scan ``text`` into ``(kind, value, position)`` tokens, checking characters and bounds as it goes.

    ``kind`` is ``"num"`` (with its ``value``) or one of ``+ - * ( )`` (value 0); ``position`` is 1-based.
    One pass over at most :data:`MAX_EXPRESSION_CHARS` characters. Raises :class:`_CalcError`.
    """
    tokens: list[tuple[str, int, int]] = []
    depth = operators = 0
    i, n = 0, len(text)
    while i < n:
        char = _ALIASES.get(text[i], text[i])
        if char == " ":
            i += 1
        elif "0" <= char <= "9":  # ASCII digits only: never str.isdigit, which accepts '٣' and '３'
            start, value = i, 0
            while i < n and "0" <= text[i] <= "9":
                if i - start == MAX_OPERAND_DIGITS:
                    raise _CalcError(f"number too long (more than {MAX_OPERAND_DIGITS} digits)")
                value = value * 10 + (ord(text[i]) - ord("0"))
                i += 1
            tokens.append(("num", value, start + 1))
        elif char in _OPERATORS:
            operators += 1
            if operators > MAX_OPERATORS:
                raise _CalcError(f"too many operators (more than {MAX_OPERATORS})")
            tokens.append((char, 0, i + 1))
            i += 1
        elif char == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise _CalcError(f"too deeply nested (more than {MAX_DEPTH} parentheses)")
            tokens.append((char, 0, i + 1))
            i += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise _CalcError("unbalanced parentheses")
            tokens.append((char, 0, i + 1))
            i += 1
        else:
            raise _CalcError(f"unknown character {_shown(text[i])}")
    if depth:
        raise _CalcError("unbalanced parentheses")
    return tokens


def _checked(value: int) -> int:
    """``value`` if it has at most :data:`MAX_RESULT_DIGITS` digits, else :class:`_CalcError`."""
    if -_MAX_MAGNITUDE <= value <= _MAX_MAGNITUDE:
        return value
    raise _CalcError(f"result too large (more than {MAX_RESULT_DIGITS} digits)")


class _Parser:
    """Recursive descent over the tokens, evaluating as it parses (the grammar is in the module docstring).

    Recursion happens only at ``(``, so its depth is at most :data:`MAX_DEPTH` levels, checked by the scanner.
    """

    def __init__(self, tokens: list[tuple[str, int, int]]):
        self.tokens = tokens
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def unexpected(self) -> _CalcError:
        if self.at == len(self.tokens):
            return _CalcError("unexpected end of expression")
        kind, value, position = self.tokens[self.at]
        shown = str(value) if kind == "num" else kind  # a number has at most MAX_OPERAND_DIGITS digits here
        return _CalcError(f"unexpected '{shown}' at character {position}")

    def expression(self) -> int:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.tokens[self.at][0]
            self.at += 1
            right = self.term()
            value = _checked(value + right if op == "+" else value - right)  # operands have ≤ 12 digits: cheap
        return value

    def term(self) -> int:
        value = self.unary()
        while self.peek() == "*":
            self.at += 1
            right = self.unary()
            # Refuse before multiplying: |a·b| ≤ M  ⇔  |b| ≤ ⌊M / |a|⌋ for integers a ≠ 0, M ≥ 0.
            if value and abs(right) > _MAX_MAGNITUDE // abs(value):
                raise _CalcError(f"result too large (more than {MAX_RESULT_DIGITS} digits)")
            value *= right
        return value

    def unary(self) -> int:
        negative = False
        while self.peek() == "-":  # a loop, not recursion: '-----3' costs no stack
            negative = not negative
            self.at += 1
        value = self.primary()
        return -value if negative else value

    def primary(self) -> int:
        kind = self.peek()
        if kind == "num":
            value = self.tokens[self.at][1]
            self.at += 1
            return value
        if kind == "(":
            self.at += 1
            value = self.expression()
            if self.peek() != ")":
                raise self.unexpected()
            self.at += 1
            return value
        raise self.unexpected()


def calculator(expression: str) -> str:
    """Evaluate an integer arithmetic expression written by a model; never evaluates code, never raises.

    Args:
        expression: the text the model wrote, e.g. ``"17 + 25"``, ``"(2+3)*4"``, ``"-3*-3"``. The language and its
            bounds are in the module docstring.

    Returns:
        The integer in plain decimal (``"42"``, ``"-42"``), or ``"error: <reason>"`` (printable ASCII) for
        anything else, including a non-``str`` argument.
    """
    if not isinstance(expression, str):
        return f"error: expected the expression as text, got {_shown(type(expression).__name__)}"
    text = str.__str__(expression)  # a plain str: a str subclass could override len() or iteration
    if len(text) > MAX_EXPRESSION_CHARS:
        return f"error: expression too long ({len(text)} > {MAX_EXPRESSION_CHARS} characters)"
    try:
        tokens = _tokenize(text)
        if not tokens:
            return "error: empty expression"
        parser = _Parser(tokens)
        value = parser.expression()
        if parser.at != len(tokens):
            raise parser.unexpected()
        return str(_checked(value))
    except _CalcError as error:
        return f"error: {error}"


TOOL_NAME = "calculator"
"""The calculator's name in a tool call: what the model writes to choose it."""

TOOLS = MappingProxyType({TOOL_NAME: calculator})
"""Every tool the model may call, by name: a read-only mapping of name → function ``str -> str``."""


def run_tool_call(name: str, arguments: str) -> str:
    """Run the tool call a model wrote: the one entry point for generation code. Never raises.

    Args:
        name: the tool's name as the model wrote it (``"calculator"``).
        arguments: the call's argument text as the model wrote it; for the calculator, the expression itself.

    Returns:
        The tool's result string; ``"error: unknown tool '<name>'"`` (the name escaped to ASCII and cut to 24
        characters) when no tool has that name; an ``error:`` string when ``name`` is not a ``str``.
    """
    if not isinstance(name, str):
        return f"error: expected the tool name as text, got {_shown(type(name).__name__)}"
    name = str.__str__(name)  # a plain str, as in calculator()
    tool = TOOLS.get(name)
    if tool is None:
        return f"error: unknown tool {_shown(name)}"
    return tool(arguments)
