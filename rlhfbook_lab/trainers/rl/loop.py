"""The loop: advantages (tensors in, tensors out), one minibatch's loss, and :func:`train_rl`, which runs
collect → advantages → update → log for every algorithm; :func:`rl_from_sft` is the CLI's recipe.

Under ``torchrun`` (``lm/distributed.py``) each process takes its share of every rollout's prompts — whole groups,
so group advantages never straddle processes — and samples them with its own random stream; each minibatch's loss
is divided by the *global* denominator (rows or tokens over all processes, ``aggregate_loss``'s
``num_items_in_batch``) and the gradients are summed across processes, so the update is the one a single process
would make on the union of the shares. Logged numbers are averaged across processes before the adaptive KL
controller reads them, so every replica keeps the same β. Whitened advantages need global statistics and are
refused on several processes.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_number
from rlhfbook_lab.equations.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_loss,
    kl_penalized_rewards,
)
from rlhfbook_lab.equations.logprobs import (
    entropy_from_logits,
    masked_mean,
    masked_sum,
    masked_whiten,
    per_token_logprobs,
)
from rlhfbook_lab.equations.policy_gradient import (
    aggregate_loss,
    cispo_policy_loss,
    entropy_loss,
    explained_variance,
    gae_advantages,
    gspo_policy_loss,
    ppo_policy_loss,
    ppo_value_loss,
    sequence_advantages,
)
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.data import collate_sft, tokenize_conversation
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.forward import check_reference, disable_dropout, make_reference_model, sft_loss_sum
from rlhfbook_lab.lm.models import check_output_folder, load_model, save_model
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.trainers.loop import autocast_context, lr_at, make_optimizer, optimizer_step
from rlhfbook_lab.trainers.rl.config import RLConfig, check_config
from rlhfbook_lab.trainers.rl.forward import ValueHead, forward_with_values
from rlhfbook_lab.trainers.rl.rollout import Rollout, collect_dynamic, collect_rollout, reward_source


class Advantages(NamedTuple):
    """What :func:`compute_advantages` returns. Tensors are detached."""

    advantages: torch.Tensor
    """(B, T): per token (GAE) or each sequence's advantage on all its tokens; 0 off the completion."""
    returns: torch.Tensor | None
    """(B, T) value targets Â + V (GAE only), else None."""
    token_rewards: torch.Tensor
    """(B, T): the per-token rewards: −β·k̂_t (if ``kl_penalty="reward"``) plus the score on the last token."""


def compute_advantages(scores: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor,
                       completion_mask: torch.Tensor, cfg: RLConfig, group_size: int | None = None,
                       values: torch.Tensor | None = None, beta: float | None = None) -> Advantages:
    """From scores and log-probs to advantages, the way ``cfg`` says (REINFORCE, RLOO, (Dr.) GRPO or PPO).

    .. math::  r_t = -\\beta_{r}\\,\\hat k(\\pi_{old}, \\pi_{ref})_t + [t = t_{last}]\\,s, \\qquad
               \\beta_r = \\beta \\text{ if kl\\_penalty = "reward" else } 0

    - ``advantage="gae"``: Â_t, R̂_t = GAE(r, V) (``policy_gradient.gae_advantages``);
    - otherwise one advantage per sequence from its total reward R = Σ_t r_t = s − β_r·KL̂, by the named
      estimator (``policy_gradient.sequence_advantages``: batch mean, leave-one-out, group z-score, group
      mean), put on every token of the sequence.

    ``cfg.whiten_advantages`` then whitens Â over all response tokens.

    Args:
        scores: Shape (B,), finite: one score per completion.
        old_logps: Shape (B, T), log π_old of the sampled tokens.
        ref_logps: Shape (B, T), log π_ref of the same tokens.
        completion_mask: Shape (B, T), 1 on response tokens; every row needs at least one.
        cfg: the estimator, KL placement and estimator, γ, λ.
        group_size: G (default ``cfg.group_size``); B must be a multiple of it for group estimators.
        values: Shape (B, T), V at rollout time; required for ``"gae"``.
        beta: the KL coefficient now (default ``cfg.beta``; an adaptive controller passes its own), >= 0.

    Raises:
        ValueError: non-finite ``scores``, B not a multiple of ``group_size`` (groups of unequal size), a row
            with no response token, ``beta < 0``, missing ``values`` for GAE.
    """
    beta = cfg.beta if beta is None else beta
    check_number("beta", beta, minimum=0)
    group_size = cfg.group_size if group_size is None else group_size
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(f"scores must be a 1-D tensor (B,); got {getattr(scores, 'shape', scores)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (no NaN or inf): check the reward")
    # kl_penalized_rewards checks the mask (a row without response tokens is refused) and the shapes
    token_rewards = kl_penalized_rewards(scores, old_logps, ref_logps, completion_mask,
                                         beta if cfg.kl_penalty == "reward" else 0.0, cfg.kl_estimator)
    returns = None
    if cfg.advantage == "gae":
        if values is None:
            raise ValueError("values (B, T) are required for advantage='gae' (PPO's value head)")
        advantages, returns = gae_advantages(token_rewards, values, completion_mask, cfg.gamma, cfg.lam)
    else:
        seq_rewards = masked_sum(token_rewards, completion_mask, dim=1)  # (B,) = s − β_r·KL̂
        seq_adv = sequence_advantages(seq_rewards, cfg.advantage, group_size)  # (B,)
        advantages = torch.where(completion_mask.bool(), seq_adv[:, None], torch.zeros_like(token_rewards))
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, completion_mask)
    return Advantages(advantages.detach(), None if returns is None else returns.detach(), token_rewards)


def rl_loss(policy, batch: dict, cfg: RLConfig, beta: float | None = None,
            value_head: ValueHead | None = None,
            num_items: tuple[float, float] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One minibatch's loss: PPO's clipped surrogate, plus β·KL (if ``kl_penalty="loss"``), the entropy bonus
    and, for PPO, vf_coef · the clipped value loss.

    .. math::  \\mathcal L = \\mathrm{agg}\\big(\\ell^{clip}_t + \\beta\\,\\hat k_t - c_H H_t\\big)
               + c_V\\,\\mathrm{token\\_mean}(\\ell^V_t)

    with agg = ``cfg.loss_agg`` (``policy_gradient.aggregate_loss``). ``batch`` holds (B, T) tensors
    ``input_ids``, ``attention_mask``, ``completion_mask``, ``old_logps``, ``ref_logps``, ``advantages`` and, for
    PPO, ``returns`` and ``old_values`` (:meth:`Rollout.minibatch`).

    ``num_items``: (the policy loss's denominator, the value loss's token count) counted over the minibatch on
    *every* process (``aggregate_loss``'s ``num_items_in_batch``), for data parallel; default this batch's own.

    Returns:
        (the scalar loss, metrics: scalar tensors ``losses/*``, ``charts/clipfrac``, ``kl/approx_kl``,
        ``charts/ratio_mean``, ``charts/entropy``, and for PPO ``charts/vf_clipfrac``).
    """
    beta = cfg.beta if beta is None else beta
    mask = batch["completion_mask"]
    logits, values = forward_with_values(policy, batch["input_ids"], batch["attention_mask"], value_head,
                              batch["completion_mask"])  # (B, T, V)
    logps = per_token_logprobs(logits, batch["input_ids"])  # (B, T): log π_θ (untempered: π is what we train)
    surrogate = {"ppo": ppo_policy_loss, "gspo": gspo_policy_loss, "cispo": cispo_policy_loss}[cfg.policy_loss]
    pg_loss, pg_metrics = surrogate(logps, batch["old_logps"], batch["advantages"], mask,
                                    cfg.clip_eps_low, cfg.clip_eps_high)
    per_token = pg_loss
    metrics: dict[str, torch.Tensor] = {}
    if cfg.kl_penalty == "loss":
        per_token_kl = kl_loss(logps, batch["ref_logps"], mask, cfg.kl_estimator)
        per_token = per_token + beta * per_token_kl
        metrics["losses/kl"] = aggregate_loss(per_token_kl.detach(), mask, cfg.loss_agg, cfg.max_new_tokens)
    aligned = F.pad(logits[:, :-1], (0, 0, 1, 0))  # (B, T, V): aligned[:, t] is the distribution of token t
    if cfg.ent_coef > 0:
        per_token = per_token + cfg.ent_coef * entropy_loss(aligned, mask)
    policy_items, value_items = num_items if num_items is not None else (None, None)
    loss = aggregate_loss(per_token, mask, cfg.loss_agg, cfg.max_new_tokens, num_items_in_batch=policy_items)
    with torch.no_grad():
        metrics["losses/policy"] = aggregate_loss(pg_loss, mask, cfg.loss_agg, cfg.max_new_tokens)
        metrics["charts/entropy"] = masked_mean(entropy_from_logits(aligned.detach()), mask)
        metrics["charts/clipfrac"] = pg_metrics["clipfrac"]
        metrics["kl/approx_kl"] = pg_metrics["approx_kl"]
        metrics["charts/ratio_mean"] = pg_metrics["ratio_mean"]
    if value_head is not None:
        vf_loss, vf_metrics = ppo_value_loss(values, batch["old_values"], batch["returns"], mask,
                                             cfg.clip_range_value)
        vf = aggregate_loss(vf_loss, mask, "token_mean", num_items_in_batch=value_items)
        loss = loss + cfg.vf_coef * vf
        metrics["losses/value"] = vf.detach()
        metrics["charts/vf_clipfrac"] = vf_metrics["vf_clipfrac"]
    metrics["losses/total"] = loss.detach()
    return loss, metrics


def training_prompts(cfg: RLConfig) -> Callable[[], list[str]]:
    """A seeded stream of training-split prompts, families in turn."""
    rng = random.Random(f"rl-prompts-{cfg.train.seed}")
    counter = iter(range(10**12))

    def draw() -> list[str]:
        return [world.sample_problem(cfg.families[next(counter) % len(cfg.families)], rng, "train").prompt
                for _ in range(cfg.prompts_per_step)]
    return draw


def sft_batches(tokenizer, cfg: RLConfig, device):
    """An endless seeded stream of SFT batches (the shipped training conversations, tokenized as drawn) for
    PPO-ptx; each batch carries ``num_items`` = its target tokens."""

    rows = load_instruction_file("train")
    gen = torch.Generator().manual_seed(cfg.train.seed)
    while True:
        order = torch.randperm(len(rows), generator=gen).tolist()
        for i in range(0, len(order) - cfg.sft_batch_size + 1, cfg.sft_batch_size):
            batch = collate_sft([tokenize_conversation(tokenizer, rows[j]["messages"])
                                 for j in order[i:i + cfg.sft_batch_size]], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            batch["num_items"] = int(batch["completion_mask"].sum())
            yield batch


def evaluate_policy(policy, tokenizer, problems, history: dict, step: int) -> None:
    with torch.random.fork_rng(devices=[]):  # evaluation must not move the rollouts' random stream
        ev = evaluate_chat(policy, tokenizer, problems, greedy=True)
    history.setdefault("eval/step", []).append(step)
    for k in ("gold_score", "correct_rate", "eos_rate"):
        history.setdefault(f"eval/{k}", []).append(ev.overall[k])


def train_rl(policy, tokenizer, cfg: RLConfig, ref_model=None, reward_fn=None,
             progress: bool = True) -> tuple[nn.Module, dict[str, list]]:
    """Train ``policy`` in place with the RL algorithm ``cfg`` describes; return ``(policy, history)``.

    Args:
        policy: a causal LM (e.g. ``load_model("sft-tiny")[0]``).
        tokenizer: its tokenizer (the world's).
        cfg: :class:`RLConfig` (``RLConfig.preset(algo)``).
        ref_model: the frozen reference; default a copy of ``policy`` as it is now (``dpo_trainer``'s
            ``make_reference_model``). It must not share parameters with the policy.
        reward_fn: overrides ``cfg.reward``: a callable ``(prompts, replies) -> (B,)`` scores (finite), or a
            ``reward_trainer.RewardModel``.
        progress: show a tqdm bar.

    Returns:
        ``history``, one value per rollout under ``"step"`` (1, 2, ...) and: ``rewards/score`` (mean score of the
        reward source), ``rewards/score_std``, ``charts/gold_score`` (mean gold score of the rollout's samples),
        ``charts/correct_rate``, ``kl/seq`` (mean over sequences of Σ_t k1 = log π_old − log π_ref: KL to the
        reference in nats per sequence), ``kl/seq_k3``, ``charts/beta``, ``charts/response_length`` (completion
        tokens), ``charts/length_correct`` and ``charts/length_wrong`` (the same over right and over wrong replies;
        NaN when there is none), ``charts/extra_words`` and ``charts/repetition`` (the gold judge's rambling and
        repetition features, mean over non-empty replies), ``charts/rollout_tokens`` (prompt + completion tokens
        of the rollout, this process's share: the FLOPs count),
        ``charts/eos_rate``, ``charts/zero_adv_share`` (share of rows whose advantage is exactly 0: unanimous
        groups), with ``cfg.dynamic_sampling`` ``charts/groups_sampled`` and ``charts/groups_dropped`` (groups
        drawn for the rollout, and left out of it), and the minibatch means of :func:`rl_loss`'s metrics
        (``losses/policy``, ``losses/kl``, ``losses/value``, ``losses/total``, ``charts/clipfrac``,
        ``kl/approx_kl``, ``charts/ratio_mean``,
        ``charts/entropy``, ``charts/vf_clipfrac``), ``losses/sft`` (PPO-ptx), ``charts/explained_variance``
        (PPO), ``charts/grad_norm``, and wall-clock ``time/generation``, ``time/scoring``, ``time/training``.
        With ``cfg.eval_prompts``: ``eval/step`` (0 = before training), ``eval/gold_score``,
        ``eval/correct_rate``, ``eval/eos_rate`` (greedy, ``evaluation.evaluate_chat``).
    """
    if not isinstance(cfg, RLConfig):
        raise ValueError(f"cfg must be an RLConfig (RLConfig.preset(algo)); got {type(cfg).__name__}")
    check_config(cfg)
    if distributed.world_size() > 1 and cfg.whiten_advantages:
        raise ValueError("whiten_advantages=True needs statistics over every process's rollout; it is not "
                         "supported on several processes (set whiten_advantages=False)")
    run = _Run(policy, tokenizer, cfg, ref_model, reward_fn)
    history: dict[str, list] = {}
    if run.eval_problems:
        evaluate_policy(policy, tokenizer, run.eval_problems, history, 0)
    bar = tqdm(range(1, cfg.train.steps + 1), desc=f"rl {cfg.algo}", disable=not progress, mininterval=1.0)
    for step in bar:
        beta = run.kl_ctl.value
        # 1. collect: sample, score, reference (and value) log-probs
        if cfg.dynamic_sampling:  # DAPO: only groups with unequal rewards, refilled from fresh prompts
            rollout, times = collect_dynamic(policy, tokenizer, lambda: distributed.shard(run.draw_prompts()), cfg,
                                             run.ref_model, run.reward, run.value_head)
        else:
            prompts = distributed.shard(run.draw_prompts())  # this process's whole groups (all of them on one)
            rollout, times = collect_rollout(policy, tokenizer, prompts, cfg, run.ref_model, run.reward,
                                             run.value_head)
        # 2. advantages
        adv = compute_advantages(rollout.scores, rollout.old_logps, rollout.ref_logps, rollout.completion_mask,
                                 cfg, rollout.group_size, rollout.old_values, beta)
        rollout.advantages, rollout.returns = adv.advantages, adv.returns
        # 3. update
        t0 = time.perf_counter()
        metrics = run.update(rollout, beta, step - 1)
        times["training"] = time.perf_counter() - t0
        # 4. log (and move the adaptive β)
        kl_seq = _log_rollout(history, step, rollout, beta, metrics, times, run.value_head)
        run.kl_ctl.update(kl_seq, rollout.completion_mask.shape[0] * distributed.world_size())  # global rows
        if run.eval_problems and cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.train.steps:
            evaluate_policy(policy, tokenizer, run.eval_problems, history, step)
        bar.set_postfix(gold=f"{history['charts/gold_score'][-1]:.3f}", kl=f"{history['kl/seq'][-1]:.2f}")
    if run.eval_problems:
        evaluate_policy(policy, tokenizer, run.eval_problems, history, cfg.train.steps)
    policy.eval()
    return policy, history


class _Run:
    """Everything a run holds between rollouts: the reference, the reward source, PPO's value head, the optimizer,
    the KL controller, the prompt stream (and PPO-ptx's SFT stream), the minibatch order's generator."""

    def __init__(self, policy, tokenizer, cfg: RLConfig, ref_model, reward_fn):
        device = next(policy.parameters()).device
        self.policy, self.cfg, self.device = policy, cfg, device
        self.ref_model = make_reference_model(policy) if ref_model is None else ref_model
        check_reference(self.ref_model, policy)
        self.ref_model.eval()
        self.reward = reward_source(cfg, reward_fn, tokenizer, device)
        disable_dropout(policy)
        policy.eval()  # no dropout: the first ratio is exactly the sampler's
        self.value_head = ValueHead(policy.config.hidden_size).to(device) if cfg.advantage == "gae" else None
        # after the head's init: every algorithm draws the same first rollout; each process its own stream
        torch.manual_seed(cfg.train.seed + distributed.rank())
        self.opt = make_optimizer(policy, cfg.train)
        if self.value_head is not None:
            self.opt.add_param_group({"params": list(self.value_head.parameters()),
                                      "lr": cfg.value_lr or cfg.train.lr, "weight_decay": 0.0})
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        self.kl_ctl = (AdaptiveKLController(cfg.beta, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target is not None
                       else FixedKLController(cfg.beta))
        self.draw_prompts = training_prompts(cfg)
        self.sft_stream = sft_batches(tokenizer, cfg, device) if cfg.sft_coef > 0 else None
        self.mb_gen = torch.Generator().manual_seed(cfg.train.seed)
        families = cfg.eval_families or world.FAMILIES
        self.eval_problems = world.heldout_prompts(cfg.eval_prompts, seed=0, families=families) if cfg.eval_prompts \
            else None

    def update(self, rollout: Rollout, beta: float, index: int) -> dict[str, float]:
        """``ppo_epochs`` passes over rollout number ``index`` (from 0) in ``num_minibatches`` shuffled minibatches,
        one optimizer step each, at the schedule's lr for that rollout; returns the minibatch means of
        :func:`rl_loss`'s metrics (and ``charts/grad_norm``)."""
        cfg, B = self.cfg, rollout.completion_mask.shape[0]
        scale = lr_at(index, cfg.train) / cfg.train.lr  # exactly 1.0 for the default constant schedule
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * scale
        mb_size = B // cfg.num_minibatches
        sums: dict[str, float] = {}
        n_updates = 0
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.mb_gen) if cfg.num_minibatches > 1 else torch.arange(B)
            for start in range(0, B, mb_size):
                batch = rollout.minibatch(order[start:start + mb_size].to(self.device))
                with autocast_context(self.device, cfg.train.bf16):
                    loss, metrics = rl_loss(self.policy, batch, cfg, beta, self.value_head, self._num_items(batch))
                    if self.sft_stream is not None:  # PPO-ptx: + sft_coef · (mean NLL per SFT target token)
                        sb = next(self.sft_stream)  # the same batch on every process: weight 1/N each
                        nll = sft_loss_sum(self.policy, sb)[0] / sb["num_items"]
                        loss = loss + cfg.sft_coef * nll / distributed.world_size()
                        metrics["losses/sft"] = nll.detach()
                loss.backward()
                distributed.sync_gradients(self.params)  # the sum over processes (each divided by the global count)
                metrics["charts/grad_norm"] = optimizer_step(self.opt, self.params, cfg.train.grad_clip)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_updates += 1
        return {k: v / n_updates for k, v in sums.items()}


    def _num_items(self, batch: dict) -> tuple[float, float] | None:
        """The minibatch's global denominators (rows or tokens for the policy loss, tokens for the value loss)
        summed over every process; None on one process (the batch's own, as before)."""
        if distributed.world_size() == 1:
            return None
        mask = batch["completion_mask"]
        tokens, rows = distributed.all_reduce_sum([float(mask.sum()), float(mask.shape[0])])
        return (tokens if self.cfg.loss_agg == "token_mean" else rows), tokens


def _log_rollout(history: dict[str, list], step: int, rollout: Rollout, beta: float, metrics: dict[str, float],
                 times: dict[str, float], value_head) -> float:
    """Append one rollout's numbers to ``history`` (keys in :func:`train_rl`'s docstring); return its KL to the
    reference, nats per sequence (the adaptive controller's input)."""
    mask = rollout.completion_mask
    B = mask.shape[0]
    with torch.no_grad():
        k1 = masked_sum(rollout.old_logps - rollout.ref_logps, mask, dim=1)  # (B,) nats per sequence
        k3 = masked_sum(kl_estimate(rollout.old_logps, rollout.ref_logps, "k3"), mask, dim=1)

    logged: set[str] = set()

    def log(key, value):
        history.setdefault(key, []).append(float(value))
        logged.add(key)

    history.setdefault("step", []).append(step)
    log("rewards/score", rollout.scores.mean())
    log("rewards/score_std", rollout.scores.std() if B > 1 else 0.0)
    log("charts/gold_score", rollout.gold.mean())
    problems = [world.parse_prompt(p) for p in rollout.prompts]
    correct = torch.tensor([world.is_correct(q, t) for q, t in zip(problems, rollout.texts)])
    lengths = mask.sum(dim=1).float().cpu()  # (B,) completion tokens
    log("charts/correct_rate", correct.float().mean())
    log("kl/seq", k1.mean())
    log("kl/seq_k3", k3.mean())
    log("charts/beta", beta)
    log("charts/response_length", lengths.mean())
    # Length dynamics (Liu et al. 2025): the lengths of right and wrong replies apart (NaN when there is none)
    # and the gold judge's rambling and repetition features, averaged over the non-empty replies.
    log("charts/length_correct", lengths[correct].mean() if correct.any() else float("nan"))
    log("charts/length_wrong", lengths[~correct].mean() if not correct.all() else float("nan"))
    feats = [world.taste_features(q, t) for q, t in zip(problems, rollout.texts) if t.strip()]
    for name in ("extra_words", "repetition"):
        log(f"charts/{name}", sum(f[name] for f in feats) / len(feats) if feats else float("nan"))
    log("charts/rollout_tokens", rollout.attention_mask.sum())  # prompt + completion tokens (FLOPs)
    log("charts/eos_rate", rollout.finished.float().mean())
    log("charts/zero_adv_share", (rollout.advantages.abs().sum(dim=1) == 0).float().mean())
    for k, v in metrics.items():
        log(k, v)
    if value_head is not None:
        log("charts/explained_variance", explained_variance(rollout.old_values, rollout.returns, mask))
    for k in ("generation", "scoring", "training"):
        log(f"time/{k}", times[k])
    for k in ("groups_sampled", "groups_dropped"):  # dynamic sampling
        if k in times:
            log(f"charts/{k}", times[k])
    if distributed.world_size() > 1:  # this rollout's numbers: the mean over processes (equal shares of rows)
        keys = sorted(k for k in history if k != "step" and k in logged)
        means = distributed.all_reduce_sum([history[k][-1] / distributed.world_size() for k in keys])
        for k, v in zip(keys, means):
            history[k][-1] = v
    return history["kl/seq"][-1]


def summarize(history: dict[str, list], last: int = 5) -> dict[str, float]:
    """The headline numbers of a run: held-out gold score and correctness before and after (greedy), the KL to
    the reference and the rollouts' mean score over the ``last`` rollouts, and the time split (seconds)."""
    tail = min(last, len(history["step"]))

    def mean_last(key):
        return sum(history[key][-tail:]) / tail

    out = {"rollouts": len(history["step"]), "kl_seq_last": mean_last("kl/seq"),
           "score_first": history["rewards/score"][0], "score_last": mean_last("rewards/score"),
           "gold_samples_first": history["charts/gold_score"][0], "gold_samples_last": mean_last("charts/gold_score")}
    if "eval/gold_score" in history:
        g, c = history["eval/gold_score"], history["eval/correct_rate"]
        out.update(gold_before=g[0], gold_after=g[-1], gold_gain=g[-1] - g[0], correct_before=c[0],
                   correct_after=c[-1])
    for k in ("generation", "scoring", "training"):
        out[f"seconds_{k}"] = sum(history[f"time/{k}"])
    return out


def rl_from_sft(cfg: RLConfig, policy: str | Path = "sft-tiny", out: str | Path | None = None,
                overwrite: bool = False, progress: bool = True):
    """Load ``policy`` (a shipped name or folder), train it with :func:`train_rl`, and save it to ``out``
    (atomically, with ``training_meta.json`` and ``training_log.json``) when given. Returns
    ``(policy, tokenizer, history)``; ``history["charts/wall_time"]`` holds the run's seconds."""
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
    model, tokenizer = load_model(policy)
    t0 = time.perf_counter()
    model, history = train_rl(model, tokenizer, cfg, progress=progress)
    history["charts/wall_time"] = [time.perf_counter() - t0]
    if out is not None:
        meta = {"policy": str(policy), "config": asdict(cfg), "train_seconds": history["charts/wall_time"][0],
                "eval": {k: history[k] for k in history if k.startswith("eval/")}}
        save_model(model, tokenizer, out, overwrite=overwrite,
                   extra_files={"training_meta.json": json.dumps(meta, indent=2, default=str),
                                "training_log.json": json.dumps(history)})
    return model, tokenizer, history
