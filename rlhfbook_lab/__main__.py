"""``rlhfbook-lab`` (and ``python -m rlhfbook_lab``): the command line's entry point.

``rlhfbook-lab chat ...`` goes straight to the chat page's server (:mod:`rlhfbook_lab.apps.chat_server`), which
imports no torch, so that the page is served within a second while the models load behind it (its flags are the
same ones, ``add_chat_arguments``); every other command goes to :mod:`rlhfbook_lab.cli`, which imports the trainers.
"""

from __future__ import annotations

import sys

from rlhfbook_lab.apps import chat_server


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["chat"]:
        chat_server.main(argv[1:])
        return
    # the full command line imports torch, transformers and every trainer (≈ 6 CPU-s); the chat page must not wait
    from rlhfbook_lab.cli import main as cli_main  # deferred: see the line above

    cli_main(argv)


if __name__ == "__main__":
    main()
