"""Where the shipped artifacts live (``RLHFBOOK_DATA`` overrides the default ``<repo>/data``), and how an output
folder is written all at once."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

DATA_DIR = Path(os.environ.get("RLHFBOOK_DATA", Path(__file__).resolve().parent.parent / "data"))
CHECKPOINTS = DATA_DIR / "checkpoints"


@contextmanager
def atomic_folder(out: Path):
    """Write the folder ``out`` all at once: yields a temporary folder beside it; when the block ends without an
    error the temporary folder replaces ``out`` (an existing one is removed), otherwise it is deleted and ``out`` is
    left as it was. An interrupted run never leaves a half-written checkpoint or report."""
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve(name_or_path: str | Path) -> Path | str:
    """A shipped checkpoint name (``"base-tiny"``) → its folder under ``data/checkpoints``; else as given."""
    p = CHECKPOINTS / str(name_or_path)
    return p if p.exists() else name_or_path
