"""The toy world: tasks a tiny model can learn, a gold judge that knows the truth, simulated annotators, a corpus.

Pure Python, deterministic, no model inside. See each module's docstring:

- :mod:`.tasks` — the four task families, prompts, reference answers, correctness checks, splits;
- :mod:`.judge` — ``gold_score`` and the taste table (the world's "model spec");
- :mod:`.annotators` — Bradley-Terry annotators with different tastes, ties, the Bayes ceiling;
- :mod:`.corpus` — pretraining text and chat instruction data;
- :mod:`.verifiers` — rule-based rewards (correctness, format) and answer extraction for RLVR (ch 7).
"""

from .annotators import ANNOTATORS, Annotator, bayes_ceiling_pair
from .corpus import heldout_prompts, instruction_data, pretraining_corpus, statement, statement_prefixes
from .judge import (
    EMPTY_RESPONSE_SCORE,
    FEATURES,
    GOLD_WEIGHTS,
    count_polite,
    gold_score,
    render_response,
    taste_features,
)
from .tasks import FAMILIES, Problem, is_correct, make_problem, parse_prompt, sample_problem, split_of
from .verifiers import correctness_reward, extract_answer, format_reward, reference_answer, verifier_rewards

__all__ = [
    "ANNOTATORS", "Annotator", "bayes_ceiling_pair", "heldout_prompts", "instruction_data", "pretraining_corpus",
    "statement", "statement_prefixes", "EMPTY_RESPONSE_SCORE", "FEATURES", "GOLD_WEIGHTS", "count_polite",
    "gold_score", "render_response", "taste_features", "FAMILIES", "Problem", "is_correct", "make_problem",
    "parse_prompt", "sample_problem", "split_of", "correctness_reward", "extract_answer", "format_reward",
    "reference_answer", "verifier_rewards",
]
