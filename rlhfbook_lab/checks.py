"""Argument checks every floor shares, so that a bad number gets the same clear message wherever it enters:
``ValueError("beta must be a finite number > 0; got nan")``. Pure Python (floor 0)."""

from __future__ import annotations

import argparse
import math
import numbers

__all__ = ["OneLineParser", "check_choice", "check_int", "check_number", "one_line"]


def check_number(name: str, value, minimum: float | None = None, maximum: float | None = None,
                 strict: bool = False) -> float:
    """Return ``float(value)`` if it is a finite real number (not a bool) within the bounds, else raise
    ``ValueError`` naming ``name``. ``strict=True`` makes ``minimum`` exclusive (``> 0`` rather than ``>= 0``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if strict else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        raise ValueError(f"{name} must be a finite number{' ' + ' and '.join(bounds) if bounds else ''}; "
                         f"got {value!r}")
    return float(value)


def check_int(name: str, value, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) within the bounds, else raise ``ValueError`` naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bounds = " and ".join(b for b in (f">= {minimum}" if minimum is not None else "",
                                          f"<= {maximum}" if maximum is not None else "") if b)
        raise ValueError(f"{name} must be an int{' ' + bounds if bounds else ''}; got {value!r}")
    return int(value)


def check_choice(name: str, value, choices) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")


def one_line(error: BaseException) -> str:
    """An error's message on one line (whitespace collapsed; the exception's type when it has no message): what
    every front door prints for bad input, after ``rlhfbook-lab <command>: error:``."""
    return " ".join(str(error).split()) or type(error).__name__


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``rlhfbook-lab rl: error: ...``) and exit code 2: the parser of every
    front door (``rlhfbook_lab.cli``, and ``rlhfbook_lab.apps.chat_server.main`` for the chat page's quick start)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
