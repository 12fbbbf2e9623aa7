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


DISPATCH = ("/torch/nn/modules/module.py",)  # nn.Module.__call__ frames between a caller and forward()


def _top_package(filename: str) -> str:
    """The installed top-level package a frame's file belongs to ('' outside site-packages)."""
    marker = "site-packages/"
    return filename.split(marker, 1)[1].split("/", 1)[0] if marker in filename else ""


def _called_from_package() -> bool:
    """True when the code that called the deprecated API is ours: walk out of the library that warns (and of
    torch's module-call dispatch); the first frame left is the caller."""
    frame = sys._getframe(2)  # the frame that called warnings.warn
    library = _top_package(frame.f_code.co_filename)
    while frame is not None and (
            (library and _top_package(frame.f_code.co_filename) == library)
            or frame.f_code.co_filename.endswith(DISPATCH)):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(PACKAGE)


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
