"""One RL loop for language models (book ch. 6): REINFORCE, RLOO, GRPO and PPO are *configurations* of it.

The public API (lessons 06, 07 and 15 use it; keep it small)::

    from rlhfbook_lab.lm.models import load_model
    from rlhfbook_lab.trainers.rl import RLConfig, train_rl

    policy, tok = load_model("sft-tiny")
    cfg = RLConfig.preset("grpo")                     # "reinforce", "rloo", "grpo", "dr_grpo" or "ppo"
    cfg = RLConfig.preset("ppo", beta=0.1, steps=20)  # any field can be overridden by keyword
    cfg = RLConfig.fast("grpo")                       # the ~30 s CPU run a lesson makes in fast mode
    policy, history = train_rl(policy, tok, cfg)      # trains ``policy`` in place
    history["eval/gold_score"]                        # [before, ..., after]: greedy, held-out prompts

- ``train_rl(policy, tokenizer, cfg, ref_model=None, reward_fn=None, progress=True) -> (policy, history)``.
  ``ref_model``: the frozen reference π_ref (default: a copy of ``policy`` taken before the first step).
  ``reward_fn``: overrides ``cfg.reward``; a callable ``(prompts: list[str], replies: list[str]) -> (B,)``
  scores, or a ``reward_trainer.RewardModel`` (scored in the sampler's own token layout).
  ``history``: a dict of per-step lists (keys in :func:`train_rl`'s docstring), plus ``eval/*`` lists with
  their own ``eval/step``.
- ``rl_from_sft(cfg, policy="sft-tiny", out=None, overwrite=False, progress=True) -> (policy, tok, history)``:
  the CLI's recipe (``rlhfbook-lab rl --algo ppo|grpo|rloo|reinforce|dr_grpo [--fast]``); saves the policy
  atomically with ``training_meta.json`` and ``training_log.json``, as ``sft`` does.
- The layers below it, each testable alone: :func:`collect_rollout` (sample, score, reference log-probs;
  ``rollout.py``) → :func:`compute_advantages` (tensors in, advantages out) → :func:`rl_loss` (one minibatch's
  forward and loss; both in ``loop.py``). The configuration and its presets are in ``config.py``; the forward
  passes that compute each distinct prompt once, and PPO's value head, in ``forward.py``.

One step of the loop (the same for every algorithm)
---------------------------------------------------
1. **Sample** ``prompts_per_step`` training prompts of the world and ``group_size`` completions of each, in
   *one* batched ``generation.generate`` call with the KV cache (rows of a group contiguous). At temperature 1
   the sampler's own log-probs *are* log π_old (``generation`` tests this to 1e-5), so we keep them instead of
   recomputing them; at another temperature (or top-p, or bf16 autocast) we recompute them with a forward pass.
2. **Score** every completion with the reward source (``cfg.reward``); the gold judge's score is computed too,
   whatever the source, so every run reports what it really achieved. An empty reply gets a documented score:

   ============  =====================================================================
   source        score of a reply
   ============  =====================================================================
   ``gold``      ``world.gold_score`` (an empty reply: ``EMPTY_RESPONSE_SCORE``, −3.4)
   ``verifier``  1.0 if ``world.is_correct`` else 0.0 (an empty reply is not correct: 0)
   ``rm``        the reward model's score of prompt + reply in the sampler's layout (an
                 empty reply: ``EMPTY_RESPONSE_SCORE``: the RM never saw one, so its
                 score there is an extrapolation we do not pay out)
   ============  =====================================================================

3. **Reference**: log π_ref of the sampled tokens (a no-grad forward of the frozen SFT model, eval mode).
4. **Advantages** (:func:`compute_advantages`). The KL to the reference enters in one of two places,
   ``cfg.kl_penalty``: ``"reward"`` (InstructGPT/PPO, RLOO: r_t = −β·k̂_t plus the score on the last token,
   ``kl.kl_penalized_rewards``) or ``"loss"`` (GRPO: β·k̂ added to the per-token loss, ``kl.kl_loss``). The
   advantage estimator is ``cfg.advantage``: ``"reinforce"`` / ``"rloo"`` / ``"grpo"`` / ``"dr_grpo"``
   (one number per sequence, from the sequence's summed reward, as ``bandit`` does) or ``"gae"`` (PPO: a value
   per token, :func:`policy_gradient.gae_advantages`).
5. **Update**: ``ppo_epochs`` passes over the rollout in ``num_minibatches`` shuffled minibatches, one
   optimizer step each, on PPO's clipped loss (``policy_gradient.ppo_policy_loss``, reduced by
   ``aggregate_loss`` with ``cfg.loss_agg``). With one epoch and one minibatch the ratio is 1 and the loss's
   gradient is the vanilla policy gradient (REINFORCE, RLOO, GRPO as TRL runs it by default).

PPO's value: a head on the policy
---------------------------------
``advantage="gae"`` needs V(s_t) per token. We put a linear head (``nn.Linear(hidden, 1)``, zero-initialised, so
V = 0 at the start) on the policy's last hidden state, as TRL's original ``AutoModelForCausalLMWithValueHead``
did, rather than training a separate value model initialised from the SFT or reward model (InstructGPT, TRL's
later ``PPOTrainer``). Why: one forward pass then gives both the logits and the values, and on a CPU, where the
forward and backward passes dominate a step, a separate critic of the same size would double the training cost.
The price: the value loss's gradient flows into the backbone the policy uses; ``vf_coef`` (0.1, TRL's old
default) keeps it small. V(s_t) for the response token at column t is read at column t − 1, the position whose
logits predict token t. The head is training state only: the saved checkpoint is the plain causal LM.

What the head achieves at this scale, measured: little. Its explained variance stays near 0 (the score depends
on whether the answer is right, which a linear read-out of a 1.8 M-parameter model's state does not predict),
so PPO's preset uses λ = 1 (Monte-Carlo returns; TRL's default is 0.95): with λ < 1 an early token (the choice
of a polite opener, the answer's first digit) gets its credit only through a value function that has not
learned, discounted by λ^L over the L tokens after it. The value then serves as a per-token baseline, and the
advantages are whitened over the batch, as TRL does.

The policy stays in eval mode while it trains (autograd does not care): dropout would make the first ratio
differ from 1. Everything is seeded by ``cfg.train.seed``: the same config gives the same run on CPU.
"""

from rlhfbook_lab.trainers.rl.config import ALGORITHMS, FAST, PRESETS, REWARD_SOURCES, RLConfig
from rlhfbook_lab.trainers.rl.forward import (
    CHUNK_OVERHEAD,
    ValueHead,
    forward_with_values,
    length_chunks,
    score_tokens,
    shared_prompt_hidden,
)
from rlhfbook_lab.trainers.rl.loop import compute_advantages, rl_from_sft, rl_loss, summarize, train_rl
from rlhfbook_lab.trainers.rl.rollout import Rollout, cat_rollouts, collect_dynamic, collect_rollout

__all__ = [
    "ALGORITHMS",
    "CHUNK_OVERHEAD",
    "FAST",
    "PRESETS",
    "REWARD_SOURCES",
    "cat_rollouts",
    "collect_dynamic",
    "collect_rollout",
    "compute_advantages",
    "forward_with_values",
    "length_chunks",
    "rl_from_sft",
    "rl_loss",
    "RLConfig",
    "Rollout",
    "score_tokens",
    "shared_prompt_hidden",
    "summarize",
    "train_rl",
    "ValueHead",
]
