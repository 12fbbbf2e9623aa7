"""Shared fixtures (the environment for the run is set in the root conftest.py), and one rule: a deprecation warning
that the package's own calls trigger is an error (the call will stop working when the library removes it)."""

import sys
import warnings
from pathlib import Path

import pytest
from _models import tiny_llama

from rlhfbook_lab.lm.tokenizer import load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="session")
def micro_model(tokenizer):
    """A randomly initialised Llama far smaller than the `tiny` preset: fast enough for property tests."""
    return tiny_llama(tokenizer, seed=0, layers=2)


PACKAGE = str(Path(__file__).resolve().parents[1] / "rlhfbook_lab")


def _called_from_package() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            return True
        frame = frame.f_back
    return False


@pytest.fixture(autouse=True)
def package_deprecations_are_errors(monkeypatch):
    """A ``DeprecationWarning`` or ``FutureWarning`` raised while package code is on the stack fails the test.
    Warnings that tests trigger in other libraries directly (TRL in the benchmark tests) are left alone."""
    real_warn = warnings.warn

    def warn(message, category=None, stacklevel=1, source=None, **kwargs):
        kind = category or (type(message) if isinstance(message, Warning) else UserWarning)
        if issubclass(kind, (DeprecationWarning, FutureWarning)) and _called_from_package():
            raise kind(f"deprecated call from rlhfbook_lab: {message}")
        return real_warn(message, category, stacklevel + 1, source, **kwargs)

    monkeypatch.setattr(warnings, "warn", warn)
