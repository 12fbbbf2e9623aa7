"""Where the shipped artifacts live. ``RLHFBOOK_DATA`` overrides the default ``<repo>/data``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("RLHFBOOK_DATA", Path(__file__).resolve().parent.parent / "data"))
CHECKPOINTS = DATA_DIR / "checkpoints"
