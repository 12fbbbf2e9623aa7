"""The direct-alignment trainer (book chapter 8): the losses of ``dpo`` on the shared loop, ``train.train``.

Three layers, each testable alone (as in rasbt's ``compute_dpo_loss`` → ``compute_dpo_loss_batch`` →
``train_model_dpo_simple``):

1. **The tensor loss** lives in ``dpo`` (``dpo_loss``, ``ipo_loss``, ``kto_loss``, ...): per-sequence log-probs
   in, per-pair losses out; it never sees a model.
2. **A batch**: :func:`concatenated_forward` scores the chosen and rejected replies of a stacked (2B, T) batch
   in one forward pass; :func:`dpo_loss_sum` adds the reference's log-probs (a frozen copy,
   :func:`make_reference_model`, or log-probs precomputed once, :func:`compute_ref_logps`) and returns the loss
   **summed** over pairs, the shared loop's contract.
3. **The loop**: :func:`train_dpo` tokenizes the pairs, refuses ties (label 0.5: these losses read every pair
   as chosen ≻ rejected), fixes the visiting order by seed and hands ``dpo_loss_sum`` to ``train.train``.

On top, the recipe of ``rlhfbook-lab dpo`` (lesson 08): :func:`dpo_config` (each loss's settings, full or fast)
and :func:`dpo_from_sft` (the SFT model + the shipped on-policy pairs → a trained model, judged by the gold judge
before and after, its KL to the reference measured, saved atomically).

Pairs are tokenized and stacked by ``preference_data.tokenize_pairs`` / ``collate_pairs``, the same helpers the
reward-model trainer uses; the collator also carries precomputed reference log-probs. KTO's unpaired examples
have their own :func:`tokenize_kto` / :func:`collate_kto`: each row adds a mismatched conversation from which
KTO estimates its reference point. Items of the loop's contract: pairs for the paired losses, examples for KTO.
"""

from rlhfbook_lab.trainers.dpo.kto import KTO_COLUMNS, REF_KTO_COLUMNS, collate_kto, kto_examples, tokenize_kto
from rlhfbook_lab.trainers.dpo.trainer import (
    FAST,
    FAST_SIZES,
    RECIPES,
    ConcatenatedOutput,
    DPOConfig,
    DPORun,
    check_dpo_config,
    compute_ref_logps,
    concatenated_forward,
    dpo_config,
    dpo_from_sft,
    dpo_loss_sum,
    train_dpo,
)

__all__ = [
    "FAST",
    "KTO_COLUMNS",
    "FAST_SIZES",
    "RECIPES",
    "REF_KTO_COLUMNS",
    "check_dpo_config",
    "collate_kto",
    "compute_ref_logps",
    "concatenated_forward",
    "ConcatenatedOutput",
    "dpo_config",
    "dpo_from_sft",
    "dpo_loss_sum",
    "DPOConfig",
    "DPORun",
    "kto_examples",
    "tokenize_kto",
    "train_dpo",
]
