"""The lesson 13 recipe: teach ``sft-tiny`` to call the calculator on three-digit sums (``world.tool_use``).

A short SFT from the shipped ``sft-tiny`` on replies such as ``[calculator(690+381) -> 1071] The answer is 1071.``,
the tool's result (`` 1071]``) masked out of the targets (``lm.tools.tool_sft_dataset``). Measured once
(``python -c "from rlhfbook_lab.recipes.tool_use import train_tool_caller; ..."``, seed 0, 2 CPU cores): 60 steps
of 16 (≈ 19 CPU-s) reach 100 % held-out accuracy with the tool on 100 problems, 0 % with the tool disabled, and
copy a lying tool's answer 100 % of the time. No checkpoint ships: it trains in seconds.

:func:`grpo_with_tools` is RL with tools (GRPO, the verifier's reward ``world.tool_use.tool_reward``, optionally
minus a cost per call) over rollouts in which the sampler runs the tool: the result tokens are in the context but
out of ``completion_mask``, so out of the policy's log-probs, the ratio and the KL. The prompts mix three-digit sums
(which need the tool) with the two-digit sums of ``sft-tiny``'s own family (which do not).
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.equations.logprobs import masked_sum
from rlhfbook_lab.equations.toolformer import toolformer_keep
from rlhfbook_lab.lm.data import build_sft_dataset
from rlhfbook_lab.lm.forward import disable_dropout, make_reference_model
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.tools import continuation_loss, tool_accuracy, tool_sft_dataset
from rlhfbook_lab.trainers.loop import TrainConfig, make_optimizer, optimizer_step
from rlhfbook_lab.trainers.rl import RLConfig, compute_advantages, rl_loss, score_tokens
from rlhfbook_lab.trainers.sft import SFTConfig, sft
from rlhfbook_lab.world import tool_use
from rlhfbook_lab.world.calculator import run_tool_call

__all__ = ["RL_STUDY_COMMAND", "TOOLFORMER_STUDY_COMMAND", "ToolRLConfig", "grpo_with_tools", "tool_problems",
           "tool_rl_study", "toolformer_conversations", "toolformer_scores", "toolformer_study", "train_tool_caller"]

RL_STUDY_COMMAND = ("python -c \"from rlhfbook_lab.recipes.tool_use import tool_rl_study; "
                    "tool_rl_study(out='data/tool_use/rl_study.json')\"")
"""The command that wrote the shipped ``data/tool_use/rl_study.json`` (lesson 13, section 7)."""


def train_tool_caller(steps: int = 60, batch_size: int = 16, lr: float = 1e-3, num_examples: int = 1000,
                      calls: bool = True, mask_results: bool = True, seed: int = 0, start: str = "sft-tiny",
                      progress: bool = False):
    """Fine-tune ``start`` on ``num_examples`` ``addition3`` conversations; return ``(model, tokenizer, history)``.

    Args:
        calls: replies call the calculator (``False``: the same problems answered alone, the baseline).
        mask_results: the tool's result tokens are not targets (``False``: the model is also trained to write
            them, as if it had produced them: the exercise).
    """
    model, tokenizer = load_model(start)
    conversations = tool_use.tool_instruction_data(num_examples, seed, calls=calls)
    data = (tool_sft_dataset(tokenizer, conversations) if mask_results
            else build_sft_dataset(tokenizer, conversations, 160))
    cfg = SFTConfig(train=TrainConfig(steps=steps, lr=lr, warmup_steps=5, bf16=False, log_every=10**6, seed=seed),
                    batch_size=batch_size)
    history = sft(model, tokenizer, data, cfg, progress=progress)
    return model, tokenizer, history


# --- RL with tools ------------------------------------------------------------------------------------------
@dataclass
class ToolRLConfig:
    """GRPO with tools (:func:`grpo_with_tools`)."""

    steps: int = 20
    """Rollouts, one optimizer step each (on-policy: the ratio is 1, the loss's gradient is the policy gradient)."""
    prompts_per_step: int = 8
    """Distinct training prompts per rollout."""
    group_size: int = 8
    """G: completions per prompt; GRPO's advantage is the reward's z-score within the group (G >= 2)."""
    two_digit_share: float = 0.5
    """Share of prompts that are two-digit sums (``world``'s ``addition``, which the model can do alone); the
    rest are ``addition3``. Both from the train split."""
    call_cost: float = 0.0
    """c in the reward 1[correct] − c · (calls), ``tool_use.tool_reward``."""
    lr: float = 3e-4
    """AdamW learning rate (constant)."""
    beta: float = 0.04
    """KL coefficient (k3 in the loss, GRPO's placement), on the model's own tokens only."""
    max_new_tokens: int = 48
    """Reply budget in tokens, tool results included."""
    max_calls: int = 4
    """Calls the tool answers per reply (later ones get an error result)."""
    seed: int = 0
    """Seeds the prompt stream and the sampler."""

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "max_new_tokens"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("group_size", self.group_size, minimum=2)
        check_int("max_calls", self.max_calls, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_number("two_digit_share", self.two_digit_share, minimum=0, maximum=1)
        for name in ("call_cost", "beta"):
            check_number(name, getattr(self, name), minimum=0)
        check_number("lr", self.lr, minimum=0, strict=True)


def tool_problems(n: int, two_digit_share: float, split: str, rng: random.Random) -> list:
    """``n`` problems, each a two-digit sum (``world``'s ``addition``) with probability ``two_digit_share``, else
    an ``addition3`` sum, from ``split``."""
    out = []
    for _ in range(n):
        if rng.random() < two_digit_share:
            out.append(world.sample_problem("addition", rng, split))
        else:
            out.append(tool_use.sample_problems(1, split, rng.randrange(2**31))[0])
    return out


def _evaluate(policy, tokenizer, eval_sets: dict, history: dict, max_new_tokens: int) -> None:
    with torch.random.fork_rng(devices=[]):  # evaluation must not move the rollouts' random stream
        for name, problems in eval_sets.items():
            acc = tool_accuracy(policy, tokenizer, problems, max_new_tokens=max_new_tokens)
            history.setdefault(f"eval/{name}/accuracy", []).append(acc["accuracy"])
            history.setdefault(f"eval/{name}/calls", []).append(acc["calls"])


def grpo_with_tools(policy, tokenizer, cfg: ToolRLConfig, eval_problems: int = 100, tool=run_tool_call,
                    progress: bool = False):
    """Train ``policy`` in place with GRPO over rollouts in which the sampler runs ``tool``; return
    ``(policy, history)``.

    One step: sample ``group_size`` replies to each of ``prompts_per_step`` prompts with the tool
    (``generation.generate(tool=...)``, temperature 1, so the sampler's log-probs are log π_old), score each with
    ``tool_use.tool_reward`` (right answer 1, minus ``call_cost`` per call), read the frozen reference's log-probs,
    and take one step on ``trainers.rl.rl_loss`` with GRPO's group advantages
    (``trainers.rl.compute_advantages``). Tool-result tokens are not in ``completion_mask``: they never enter the
    ratio, the advantage-weighted log-probs or the KL.

    History (one value per rollout): ``reward``, ``correct`` (share right), ``calls`` (mean calls per reply),
    ``calls_two_digit`` (share of two-digit replies that call; ``nan`` with no two-digit prompt in the rollout),
    ``kl`` (Σ_t log π_old − log π_ref per reply, nats, model tokens only), ``tool_tokens`` (mean tool tokens per
    reply). With ``eval_problems`` > 0, greedy held-out accuracy and call share before and after training on
    ``eval/addition3/*`` and ``eval/two_digit/*`` (``[before, after]``).
    """
    if not isinstance(cfg, ToolRLConfig):
        raise ValueError(f"cfg must be a ToolRLConfig; got {type(cfg).__name__}")
    check_int("eval_problems", eval_problems, minimum=0)
    rl_cfg = RLConfig.preset("grpo", prompts_per_step=cfg.prompts_per_step, group_size=cfg.group_size,
                             max_new_tokens=cfg.max_new_tokens, beta=cfg.beta, eval_prompts=0,
                             **{"train.steps": cfg.steps, "train.lr": cfg.lr, "train.seed": cfg.seed})
    ref_model = make_reference_model(policy)
    disable_dropout(policy)
    policy.eval()  # no dropout: the first ratio is exactly the sampler's
    torch.manual_seed(cfg.seed)
    opt = make_optimizer(policy, rl_cfg.train)
    params = [p for g in opt.param_groups for p in g["params"]]
    rng = random.Random(f"tool-rl-{cfg.seed}")
    history: dict[str, list] = {}
    eval_sets = {}
    if eval_problems:
        heldout_rng = random.Random(0)
        eval_sets = {"addition3": tool_use.sample_problems(eval_problems, "heldout", seed=0),
                     "two_digit": [world.sample_problem("addition", heldout_rng, "heldout")
                                   for _ in range(eval_problems)]}
        _evaluate(policy, tokenizer, eval_sets, history, cfg.max_new_tokens)
    for step in range(1, cfg.steps + 1):
        problems = tool_problems(cfg.prompts_per_step, cfg.two_digit_share, "train", rng)
        gen = generate(policy, tokenizer, [p.prompt for p in problems], max_new_tokens=cfg.max_new_tokens,
                       num_return_sequences=cfg.group_size, tool=tool, max_calls=cfg.max_calls)
        mask = gen.completion_mask
        rows = [p for p in problems for _ in range(cfg.group_size)]
        scores = torch.tensor([tool_use.tool_reward(p, t, cfg.call_cost) for p, t in zip(rows, gen.texts)])
        ref_logps, _ = score_tokens(ref_model, gen.input_ids, gen.attention_mask, 64, completion_mask=mask)
        zero = torch.zeros(())
        old_logps = torch.where(mask.bool(), gen.logprobs.float(), zero)
        ref_logps = torch.where(mask.bool(), ref_logps.float(), zero)
        adv = compute_advantages(scores, old_logps, ref_logps, mask, rl_cfg)
        batch = {"input_ids": gen.input_ids, "attention_mask": gen.attention_mask, "completion_mask": mask,
                 "old_logps": old_logps, "ref_logps": ref_logps, "advantages": adv.advantages}
        loss, _ = rl_loss(policy, batch, rl_cfg)
        loss.backward()
        optimizer_step(opt, params, rl_cfg.train.grad_clip)
        calls = [tool_use.count_calls(t) for t in gen.texts]
        two = [c > 0 for p, c in zip(rows, calls) if p.family == "addition"]
        for key, value in (("reward", float(scores.mean())),
                           ("correct", sum(tool_use.is_correct(p, t) for p, t in zip(rows, gen.texts)) / len(rows)),
                           ("calls", sum(calls) / len(calls)),
                           ("calls_two_digit", sum(two) / len(two) if two else float("nan")),
                           ("kl", float(masked_sum(old_logps - ref_logps, mask, dim=1).mean())),
                           ("tool_tokens", float(gen.tool_mask.sum(1).float().mean()))):
            history.setdefault(key, []).append(value)
        if progress:
            print(f"step {step}: reward {history['reward'][-1]:.3f} correct {history['correct'][-1]:.2f} "
                  f"calls {history['calls'][-1]:.2f} kl {history['kl'][-1]:.3f}", flush=True)
    if eval_problems:
        _evaluate(policy, tokenizer, eval_sets, history, cfg.max_new_tokens)
    policy.eval()
    return policy, history


def tool_rl_study(costs: tuple[float, ...] = (0.0, 0.1), sft: dict | None = None, steps: int = 20,
                  lr: float = 5e-5, eval_problems: int = 100, seed: int = 0, out: str | Path | None = None) -> dict:
    """RL with tools from one tool caller, once per call cost: does GRPO raise accuracy, and what does a price
    per call do to the calls on two-digit sums (which the model could answer alone)?

    Trains the caller with :func:`train_tool_caller` (``sft``: its keywords; default lesson 13's fast-mode run,
    50 steps × 8 at lr 2e-3), then for each cost runs :func:`grpo_with_tools` from a copy of it (``steps``
    rollouts of 8 prompts × 8, half of them two-digit sums, at ``lr``) and records greedy held-out accuracy and
    call share on ``addition3`` and on two-digit sums before and after, the last rollouts' KL and CPU time.
    Writes the result as JSON to ``out`` when given (:data:`RL_STUDY_COMMAND` wrote the shipped one)."""
    sft = dict(steps=50, batch_size=8, lr=2e-3) if sft is None else sft
    t0 = time.process_time()
    caller, tokenizer, _ = train_tool_caller(seed=seed, **sft)
    result = {"command": RL_STUDY_COMMAND, "sft": sft, "runs": []}
    for cost in costs:
        cfg = ToolRLConfig(steps=steps, lr=lr, call_cost=cost, seed=seed)
        t1 = time.process_time()
        _, h = grpo_with_tools(copy.deepcopy(caller), tokenizer, cfg, eval_problems=eval_problems)
        tail = h["kl"][-5:]
        result["runs"].append({
            "call_cost": cost, "config": asdict(cfg), "cpu_seconds": round(time.process_time() - t1, 1),
            **{f"{k.removeprefix('eval/').replace('/', '_')}_{when}": h[k][i]
               for k in h if k.startswith("eval/") for i, when in ((0, "before"), (-1, "after"))},
            "kl_last": sum(tail) / len(tail), "reward_first": h["reward"][0], "reward_last": h["reward"][-1],
            "history": {k: [round(v, 4) for v in h[k]] for k in h if not k.startswith("eval/")}})
    result["cpu_seconds"] = round(time.process_time() - t0, 1)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


# --- Toolformer's filter as a data builder ------------------------------------------------------------------
TOOLFORMER_STUDY_COMMAND = ("python -c \"from rlhfbook_lab.recipes.tool_use import toolformer_study; "
                            "toolformer_study(out='data/tool_use/toolformer_study.json')\"")
"""The command that wrote the shipped ``data/tool_use/toolformer_study.json`` (lesson 13, section 6)."""


def _own_reply(p) -> str:
    a, b = p.key
    return f"{a} + {b} = {a + b}."


def toolformer_scores(judge, tokenizer, problems) -> torch.Tensor:
    """(N, 3) losses ``(L⁺, L(ε), L(e(c, ε)))`` of each problem's answer ``s.`` (nats per token) under ``judge``,
    for :func:`toolformer_conversations`:

    - L⁺ after the call with its result, ``[calculator(a+b) -> s] The answer is ``;
    - L(ε) after the judge's own way to an answer without a call, ``a + b = `` (``sft-tiny``'s reply format);
    - L(e(c, ε)) after the call without its result, ``[calculator(a+b) ->] The answer is ``.

    Toolformer scores the whole text after the call. Here that text is mostly a phrase (``The answer is``) that a
    judge which never saw a call finds unlikely whatever the result, and L⁺ − L(ε) would measure the phrase, not
    the result (measured once with ``sft-tiny``: on the whole continuation the filter kept *more* two-digit calls
    than three-digit ones). Scoring only the answer's tokens, each after the text that leads to it, asks the
    filter's question: does the result make the answer easier to predict than the judge's own best attempt?"""
    if not problems:
        raise ValueError("problems is empty")
    rows = []
    for p in problems:
        a, b = p.key
        s, call = a + b, tool_use.call_text(tool_use.TOOL_NAME, f"{a}+{b}")
        rows.append((continuation_loss(judge, tokenizer, p.prompt, f"{call} {s}] The answer is ", f"{s}."),
                     continuation_loss(judge, tokenizer, p.prompt, f"{a} + {b} = ", f"{s}."),
                     continuation_loss(judge, tokenizer, p.prompt, f"{call}] The answer is ", f"{s}.")))
    return torch.tensor(rows)


def toolformer_conversations(problems, losses: torch.Tensor, tau: float) -> tuple[list[dict], torch.Tensor]:
    """Toolformer's step 2 in miniature: keep a problem's candidate call iff L⁻ − L⁺ ≥ ``tau``
    (``equations.toolformer.toolformer_keep`` on :func:`toolformer_scores`' ``losses``); where it is dropped, the
    reply is the judge's own format without a call, ``a + b = s.``. Returns the conversations
    (``{"messages": [user, assistant]}``) and the (N,) bool tensor of calls kept; ``tau = -inf`` keeps every
    call, ``tau = inf`` none."""
    if losses.shape != (len(problems), 3):
        raise ValueError(f"losses must have shape ({len(problems)}, 3); got {tuple(losses.shape)}")
    keep = toolformer_keep(losses[:, 0], losses[:, 1], losses[:, 2], tau)
    conversations = [{"messages": [{"role": "user", "content": p.prompt}, {"role": "assistant", "content":
                                   tool_use.tool_reply(p) if k else _own_reply(p)}]}
                     for p, k in zip(problems, keep.tolist())]
    return conversations, keep


def toolformer_study(num_problems: int = 400, tau: float = 0.0, taus: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0),
                     steps: int = 60, batch_size: int = 16, lr: float = 1e-3, eval_problems: int = 100,
                     seed: int = 0, judge: str = "sft-tiny", out: str | Path | None = None) -> dict:
    """Toolformer's filter, then training on what it kept, against training on every call and on none.

    ``num_problems`` training problems (half two-digit sums, which ``judge`` can answer alone, half ``addition3``)
    are scored once by ``judge`` (:func:`toolformer_scores`); ``taus`` gives the share of calls kept per family.
    Three SFT runs from ``sft-tiny`` on the same problems and budget (``steps`` × ``batch_size`` at ``lr``,
    tool results masked) differ only in which replies call: every one, those the filter keeps at ``tau`` (the
    rest answered as ``a + b = s.``), none. Each is measured greedily on ``eval_problems`` held-out problems of
    each family with the real tool: accuracy and the share of replies that call. Writes JSON to ``out`` when
    given (:data:`TOOLFORMER_STUDY_COMMAND` wrote the shipped one)."""
    check_int("num_problems", num_problems, minimum=2)
    check_int("eval_problems", eval_problems, minimum=1)
    check_number("tau", tau)
    t0 = time.process_time()
    problems = tool_problems(num_problems, 0.5, "train", random.Random(seed))
    judge_model, tokenizer = load_model(judge)
    losses = toolformer_scores(judge_model, tokenizer, problems)
    three = torch.tensor([p.family == tool_use.FAMILY for p in problems])
    gain = losses[:, 1:].min(1).values - losses[:, 0]  # L⁻ − L⁺
    result = {"command": TOOLFORMER_STUDY_COMMAND, "judge": judge, "num_problems": num_problems, "tau": tau,
              "sft": {"steps": steps, "batch_size": batch_size, "lr": lr},
              "kept": {str(t): {"addition3": round(float(k[three].float().mean()), 4),
                                "addition": round(float(k[~three].float().mean()), 4)}
                       for t in taus for k in [toolformer_keep(losses[:, 0], losses[:, 1], losses[:, 2], t)]},
              "gain_median": {family: round(float(gain[rows].median()), 4)
                              for family, rows in (("addition3", three), ("addition", ~three))},
              "arms": {}}
    rng = random.Random(seed + 1)
    heldout = {"addition3": tool_use.sample_problems(eval_problems, "heldout", seed=seed + 1),
               "addition": [world.sample_problem("addition", rng, "heldout") for _ in range(eval_problems)]}
    for arm, arm_tau in (("every call", float("-inf")), (f"filtered (τ = {tau})", tau), ("no call", float("inf"))):
        conversations, keep = toolformer_conversations(problems, losses, arm_tau)
        model, _ = load_model("sft-tiny")
        cfg = SFTConfig(train=TrainConfig(steps=steps, lr=lr, warmup_steps=5, bf16=False, log_every=10**6,
                                          seed=seed), batch_size=batch_size)
        sft(model, tokenizer, tool_sft_dataset(tokenizer, conversations), cfg, progress=False)
        row = {"train_calls": round(float(keep.float().mean()), 4)}
        for family, probs in heldout.items():
            acc = tool_accuracy(model, tokenizer, probs)
            row[f"{family}_accuracy"], row[f"{family}_calls"] = acc["accuracy"], acc["calls"]
        result["arms"][arm] = row
    result["cpu_seconds"] = round(time.process_time() - t0, 1)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result
