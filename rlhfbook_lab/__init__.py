"""rlhfbook_lab: the RLHF Book's methods from scratch on a toy world with a gold judge.

The floors, ground up (``tests/test_layers.py`` enforces them): ``equations/`` (tensor maths) and ``world/`` (the
toy world), ``lm/`` (language models and their data), ``trainers/``, ``recipes/`` (studies that chain trainers),
and the front doors ``cli``, ``lesson`` and ``apps/``.
"""

import os

# The character tokenizer is fast; its Rust thread pool only warns after a fork (the data loader, nbval's kernels).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
