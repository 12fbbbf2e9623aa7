"""Test-run settings, for the unit tests and the lessons alike (nbval kernels inherit this environment):
fast mode on, the Hugging Face hub offline, no progress-bar noise.

``OMP_WAIT_POLICY=PASSIVE``: while a lesson's kernel computes, the pytest process (and any other) must not keep
OpenMP threads spinning; on 2 cores a spinning neighbour slowed lesson 03 from ~40 s to ~160 s. It has to be set
before torch loads OpenMP, which is why it lives here (this file is imported first). The same holds for the
thread count of each parallel worker, below."""

import os

os.environ.setdefault("RLHFBOOK_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per pytest-xdist worker (a worker per core, `-n auto` in pyproject.toml): the lessons' tiny models
    # run small operations that two threads barely speed up, while two processes on two cores run twice the work.
    # Set before torch loads; the lessons' kernels, started by the worker, inherit it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Lessons executed by nbval are stored in the static site's cache (rlhfbook_lab/apps/nbval_cache.py), so that
# `rlhfbook-lab site` after `pytest` renders them without running them again.
pytest_plugins = ["rlhfbook_lab.apps.nbval_cache"]
