"""Shared fixtures (the environment for the run is set in the root conftest.py)."""

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
