"""Test-run settings, for the unit tests and the lessons alike (nbval kernels inherit this environment):
fast mode on, the Hugging Face hub offline, no progress-bar noise."""

import os

os.environ.setdefault("RLHFBOOK_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
