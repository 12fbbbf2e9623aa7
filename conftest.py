"""Test-run settings, for the unit tests and the lessons alike (nbval kernels inherit this environment):
fast mode on, the Hugging Face hub offline, no progress-bar noise.

``OMP_WAIT_POLICY=PASSIVE``: while a lesson's kernel computes, the pytest process (and any other) must not keep
OpenMP threads spinning; on 2 cores a spinning neighbour slowed lesson 03 from ~40 s to ~160 s. It has to be set
before torch loads OpenMP, which is why it lives here (this file is imported first)."""

import os

os.environ.setdefault("RLHFBOOK_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Lessons executed by nbval are stored in the static site's cache (rlhfbook_lab/apps/nbval_cache.py), so that
# `rlhfbook-lab site` after `pytest` renders them without running them again.
pytest_plugins = ["rlhfbook_lab.apps.nbval_cache"]
