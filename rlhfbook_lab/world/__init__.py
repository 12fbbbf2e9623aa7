"""The toy world: tasks a tiny model can learn, a gold judge that knows the truth, simulated annotators, a corpus.

Pure Python, deterministic, no model inside. See each module's docstring:

- :mod:`.tasks` — the four task families, prompts, reference answers, correctness checks, splits;
- :mod:`.spec` — the model spec: the taste table as a file (``data/spec/default.json``), validated on load;
- :mod:`.judge` — ``gold_score`` and the taste table (the world's "model spec");
- :mod:`.annotators` — Bradley-Terry annotators with different tastes, ties, the Bayes ceiling;
- :mod:`.corpus` — pretraining text and chat instruction data;
- :mod:`.verifiers` — rule-based rewards (correctness, format) and answer extraction for RLVR (ch 7);
- :mod:`.calculator` — the calculator tool, safe on hostile input (ch 13);
- :mod:`.tool_use` — tool calls in the reply's text (render, parse, pending call) and the ``addition3`` family;
- :mod:`.pairwise` — the pairwise-judge task: a question and replies A and B, the verdict "A" or "B" (ch 12);
- :mod:`.constitution` — the constitution's principles, their rule verdicts, the critique-and-revise task (ch 12);
- :mod:`.thinking` — the ``sum3`` family: three-operand sums whose reply may write the intermediate step (ch 7).
"""

from .annotators import ANNOTATORS, Annotator, bayes_ceiling_pair, spec_annotators
from .constitution import (
    CONSTITUTION,
    NOTHING_TO_FIX,
    PRINCIPLE_FEATURES,
    REVISION_REQUESTS,
    check_constitution,
    check_principle,
    critique,
    follows,
    parse_revision,
    principle_judge_conversations,
    principle_judge_prompt,
    principle_verdict,
    revise,
    revision_conversations,
    revision_prompt,
    revision_target,
)
from .corpus import heldout_prompts, instruction_data, pretraining_corpus, statement, statement_prefixes
from .judge import (
    DEFAULT_SPEC,
    EMPTY_RESPONSE_SCORE,
    FEATURES,
    GOLD_WEIGHTS,
    count_polite,
    gold_score,
    lowest_score,
    render_response,
    taste_features,
)
from .pairwise import JUDGE_QUESTION, VERDICTS, judge_conversations, judge_prompt, parse_verdict
from .spec import Spec, load_spec, spec_from_dict, spec_names
from .tasks import FAMILIES, Problem, is_correct, make_problem, parse_prompt, sample_problem, split_of
from .thinking import direct_reply, forced_prefix, reply_form, step_reply
from .tool_use import inline_tool_messages, parse_reply, pending_call, render_reply
from .verifiers import correctness_reward, extract_answer, format_reward, reference_answer, set_answer, verifier_rewards

__all__ = [
    "ANNOTATORS", "Annotator", "bayes_ceiling_pair", "spec_annotators", "heldout_prompts", "instruction_data",
    "pretraining_corpus", "statement", "statement_prefixes", "DEFAULT_SPEC", "EMPTY_RESPONSE_SCORE", "FEATURES",
    "GOLD_WEIGHTS", "count_polite", "gold_score", "lowest_score", "render_response", "taste_features", "Spec",
    "load_spec", "spec_from_dict", "spec_names", "FAMILIES", "Problem", "is_correct", "make_problem",
    "parse_prompt", "sample_problem", "split_of", "correctness_reward", "extract_answer", "format_reward",
    "reference_answer", "set_answer", "verifier_rewards", "inline_tool_messages", "parse_reply", "pending_call",
    "render_reply", "direct_reply", "forced_prefix", "reply_form", "step_reply", "JUDGE_QUESTION", "VERDICTS",
    "judge_conversations", "judge_prompt", "parse_verdict", "CONSTITUTION", "NOTHING_TO_FIX", "PRINCIPLE_FEATURES",
    "REVISION_REQUESTS", "check_constitution", "check_principle", "critique", "follows", "parse_revision",
    "principle_judge_conversations", "principle_judge_prompt", "principle_verdict", "revise", "revision_conversations",
    "revision_prompt", "revision_target",
]
