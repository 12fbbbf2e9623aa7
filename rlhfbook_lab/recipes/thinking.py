"""Thinking before answering, in miniature (lesson 07): does writing the intermediate step help, and does RL on the
final answer alone keep it?

The task is ``world.thinking``'s ``sum3`` family (``What is 17 + 25 + 38?``), whose right reply either writes the
step (``17 + 25 = 42. 42 + 38 = 80.``) or gives the answer alone (``17 + 25 + 38 = 80.``). Three stages:

1. :func:`train_sum3_writer`: a short SFT from the shipped ``sft-tiny`` on conversations of which half write the
   step and half do not (``thinking.instruction_data``; 300 steps of 16, about a minute of CPU); no checkpoint
   ships;
2. :func:`form_accuracy`: held-out accuracy with each form *forced* (the reply prefilled with ``"a + b ="`` or
   ``"a + b +"``: the same problems, only the form differs), and what the model does when free — the share of
   sampled replies that write the step, and the accuracy of each form among them;
3. :func:`grpo_sum3`: GRPO (β = 0, R1-Zero's recipe) on ``thinking.verifier_reward``, the final answer only:
   writing the step earns nothing by itself, so whether its share grows is the model's own discovery.

:func:`thinking_study` runs all three and writes a small JSON (:data:`STUDY_COMMAND` wrote the shipped
``data/reasoning/thinking.json``, which lesson 07 plots without training).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.equations.logprobs import masked_sum
from rlhfbook_lab.lm.data import build_sft_dataset
from rlhfbook_lab.lm.forward import disable_dropout, make_reference_model
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.trainers.loop import TrainConfig, make_optimizer, optimizer_step
from rlhfbook_lab.trainers.rl import RLConfig, compute_advantages, rl_loss, score_tokens
from rlhfbook_lab.trainers.sft import SFTConfig, sft
from rlhfbook_lab.world import thinking

__all__ = ["STUDY_COMMAND", "SHIPPED_STUDY", "Sum3RLConfig", "form_accuracy", "grpo_sum3", "load_thinking_study",
           "prefilled_prompt",
           "thinking_study", "train_sum3_writer"]

SHIPPED_STUDY = DATA_DIR / "reasoning" / "thinking.json"
"""The shipped result of :func:`thinking_study` (lesson 07)."""
STUDY_COMMAND = ("python -c \"from rlhfbook_lab.recipes.thinking import thinking_study; "
                 "thinking_study(out='data/reasoning/thinking.json')\"")
"""The command that wrote :data:`SHIPPED_STUDY`."""


def train_sum3_writer(steps: int = 300, batch_size: int = 16, lr: float = 1e-3, num_examples: int = 2000,
                      step_share: float = 0.5, seed: int = 0, start: str = "sft-tiny", progress: bool = False):
    """Fine-tune ``start`` on ``num_examples`` ``sum3`` conversations, a share ``step_share`` of them writing the
    step; return ``(model, tokenizer, history)`` (the SFT loop's history)."""
    check_int("steps", steps, minimum=1)
    check_int("num_examples", num_examples, minimum=1)
    model, tokenizer = load_model(start)
    data = build_sft_dataset(tokenizer, thinking.instruction_data(num_examples, step_share, seed), 160)
    cfg = SFTConfig(train=TrainConfig(steps=steps, lr=lr, warmup_steps=5, bf16=False, log_every=10**6, seed=seed),
                    batch_size=batch_size)
    history = sft(model, tokenizer, data, cfg, progress=progress)
    return model, tokenizer, history


def prefilled_prompt(tokenizer, problem, prefix: str) -> str:
    """The raw text of a chat prompt (without BOS: ``generate(chat=False)`` adds it) with the reply begun."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": problem.prompt}], add_generation_prompt=True,
                                         tokenize=False)
    return text.removeprefix(tokenizer.bos_token) + prefix


def form_accuracy(model, tokenizer, problems, samples: int = 8, max_new_tokens: int = 32,
                  seed: int = 0) -> dict[str, float]:
    """How well ``model`` answers ``sum3`` ``problems`` in each form, and which form it picks.

    Returns:
        ``forced_step`` / ``forced_direct``: greedy accuracy with the reply prefilled by
        ``thinking.forced_prefix`` (same problems, the form imposed; a reply counts if it is right *and* keeps
        that form to the end); ``greedy``, ``greedy_step_share``: greedy
        accuracy and form when free; ``sampled``, ``step_share``, ``other_share``: accuracy and the shares of
        forms over ``samples`` replies per problem at temperature 1; ``sampled_step`` / ``sampled_direct``:
        accuracy among sampled replies of each form (``nan`` if none); ``step_right``: share of sampled
        step-form replies whose written step is right; ``n`` problems.
    """
    check_int("samples", samples, minimum=1)
    if not problems:
        raise ValueError("problems is empty")
    out: dict[str, float] = {"n": len(problems)}
    with torch.random.fork_rng(devices=[]):
        for form in thinking.FORMS:
            prefixes = [thinking.forced_prefix(p, form) for p in problems]
            gen = generate(model, tokenizer, [prefilled_prompt(tokenizer, p, x) for p, x in zip(problems, prefixes)],
                           max_new_tokens=max_new_tokens, greedy=True, chat=False)
            out[f"forced_{form}"] = sum(thinking.is_correct(p, x + t) and thinking.reply_form(x + t) == form
                                        for p, x, t in zip(problems, prefixes, gen.texts)) / len(problems)
        gen = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens, greedy=True)
        out["greedy"] = sum(thinking.is_correct(p, t) for p, t in zip(problems, gen.texts)) / len(problems)
        out["greedy_step_share"] = sum(thinking.reply_form(t) == "step" for t in gen.texts) / len(problems)
        gen = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                       num_return_sequences=samples, seed=seed)
    rows = [p for p in problems for _ in range(samples)]
    forms = [thinking.reply_form(t) for t in gen.texts]
    right = [thinking.is_correct(p, t) for p, t in zip(rows, gen.texts)]
    out["sampled"] = sum(right) / len(rows)
    out["step_share"] = forms.count("step") / len(rows)
    out["other_share"] = forms.count("other") / len(rows)
    for form in thinking.FORMS:
        hits = [r for r, f in zip(right, forms) if f == form]
        out[f"sampled_{form}"] = sum(hits) / len(hits) if hits else float("nan")
    steps = [thinking.step_is_right(p, t) for p, t, f in zip(rows, gen.texts, forms) if f == "step"]
    out["step_right"] = sum(steps) / len(steps) if steps else float("nan")
    return out


@dataclass
class Sum3RLConfig:
    """GRPO on ``sum3`` with the final answer's reward (:func:`grpo_sum3`)."""

    steps: int = 40
    """Rollouts, one optimizer step each (on-policy)."""
    prompts_per_step: int = 16
    """Distinct training prompts per rollout (train split)."""
    group_size: int = 8
    """G: replies per prompt; GRPO's advantage is the reward's z-score within the group (G >= 2)."""
    lr: float = 1e-4
    """AdamW learning rate (constant): lesson 07 §4's."""
    beta: float = 0.0
    """KL coefficient (k3 in the loss); 0 is R1-Zero's recipe."""
    max_new_tokens: int = 32
    """Reply budget in tokens (the step form takes about 28)."""
    seed: int = 0
    """Seeds the prompt stream and the sampler."""

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "max_new_tokens"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("group_size", self.group_size, minimum=2)
        check_int("seed", self.seed, minimum=0)
        check_number("beta", self.beta, minimum=0)
        check_number("lr", self.lr, minimum=0, strict=True)


def grpo_sum3(policy, tokenizer, cfg: Sum3RLConfig, progress: bool = False):
    """Train ``policy`` in place with GRPO on ``thinking.verifier_reward`` (the final answer only); return
    ``(policy, history)``.

    One step: ``group_size`` replies at temperature 1 to each of ``prompts_per_step`` fresh train-split prompts,
    reward 1 for a right final answer, group z-score advantages (``trainers.rl.compute_advantages`` with the
    GRPO preset), one step on ``trainers.rl.rl_loss``. History (one value per rollout): ``reward``,
    ``step_share`` and ``other_share`` (shares of the rollout's replies by form), ``correct_step`` /
    ``correct_direct`` (accuracy within each form; ``nan`` if none), ``length`` (completion tokens) and ``kl``
    (Σ_t log π_old − log π_ref per reply, nats).
    """
    if not isinstance(cfg, Sum3RLConfig):
        raise ValueError(f"cfg must be a Sum3RLConfig; got {type(cfg).__name__}")
    rl_cfg = RLConfig.preset("grpo", prompts_per_step=cfg.prompts_per_step, group_size=cfg.group_size,
                             max_new_tokens=cfg.max_new_tokens, beta=cfg.beta, eval_prompts=0,
                             **{"train.steps": cfg.steps, "train.lr": cfg.lr, "train.seed": cfg.seed})
    ref_model = make_reference_model(policy)
    disable_dropout(policy)
    policy.eval()  # no dropout: the first ratio is exactly the sampler's
    torch.manual_seed(cfg.seed)
    opt = make_optimizer(policy, rl_cfg.train)
    params = [p for g in opt.param_groups for p in g["params"]]
    problems_all = thinking.sample_problems(cfg.steps * cfg.prompts_per_step, "train", seed=1000 + cfg.seed)
    history: dict[str, list] = {}
    for step in range(1, cfg.steps + 1):
        problems = problems_all[(step - 1) * cfg.prompts_per_step: step * cfg.prompts_per_step]
        gen = generate(policy, tokenizer, [p.prompt for p in problems], max_new_tokens=cfg.max_new_tokens,
                       num_return_sequences=cfg.group_size)
        mask = gen.completion_mask
        rows = [p for p in problems for _ in range(cfg.group_size)]
        scores = torch.tensor([thinking.verifier_reward(p, t) for p, t in zip(rows, gen.texts)])
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
        forms = [thinking.reply_form(t) for t in gen.texts]
        values = {"reward": float(scores.mean()), "step_share": forms.count("step") / len(forms),
                  "other_share": forms.count("other") / len(forms)}
        for form in thinking.FORMS:
            hits = [float(s) for s, f in zip(scores, forms) if f == form]
            values[f"correct_{form}"] = sum(hits) / len(hits) if hits else float("nan")
        values["length"] = float(mask.sum(1).float().mean())
        values["kl"] = float(masked_sum(old_logps - ref_logps, mask, dim=1).mean())
        for key, value in values.items():
            history.setdefault(key, []).append(value)
        if progress:
            print(f"step {step}: reward {values['reward']:.3f} step share {values['step_share']:.2f} "
                  f"kl {values['kl']:.3f}", flush=True)
    policy.eval()
    return policy, history


def _round(x: float):
    """4 decimals; an int stays an int; NaN as JSON's null."""
    return x if isinstance(x, int) else None if x != x else round(float(x), 4)


def thinking_study(sft_steps: int = 300, step_share: float = 0.5, rl: Sum3RLConfig | None = None,
                   eval_problems: int = 200, samples: int = 8, seed: int = 0, out: str | Path | None = None,
                   progress: bool = False) -> dict:
    """SFT on a half-and-half mix of the two forms (:func:`train_sum3_writer`), :func:`form_accuracy` on
    ``eval_problems`` held-out problems, GRPO on the final answer (:func:`grpo_sum3`, ``rl``: default
    :class:`Sum3RLConfig`), :func:`form_accuracy` again. Returns (and writes to ``out`` as JSON when given)
    ``{"command", "sft", "rl", "before", "after", "history", "cpu_seconds"}``."""
    rl = Sum3RLConfig(seed=seed) if rl is None else rl
    t0 = time.process_time()
    model, tokenizer, _ = train_sum3_writer(steps=sft_steps, step_share=step_share, seed=seed)
    t_sft = time.process_time() - t0
    problems = thinking.sample_problems(eval_problems, "heldout", seed=0)
    before = form_accuracy(model, tokenizer, problems, samples=samples, seed=seed)
    t1 = time.process_time()
    _, history = grpo_sum3(model, tokenizer, rl, progress=progress)
    t_rl = time.process_time() - t1
    after = form_accuracy(model, tokenizer, problems, samples=samples, seed=seed)
    result = {"command": STUDY_COMMAND, "sft": {"steps": sft_steps, "step_share": step_share, "seed": seed},
              "rl": asdict(rl), "eval_problems": eval_problems, "samples": samples,
              "before": {k: _round(v) for k, v in before.items()}, "after": {k: _round(v) for k, v in after.items()},
              "history": {k: [_round(v) for v in vals] for k, vals in history.items()},
              "cpu_seconds": {"sft": round(t_sft, 1), "rl": round(t_rl, 1),
                              "total": round(time.process_time() - t0, 1)}}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def load_thinking_study(path: str | Path | None = None) -> dict:
    """A result :func:`thinking_study` wrote (default: the shipped :data:`SHIPPED_STUDY`), nulls as NaN."""
    data = json.loads(Path(SHIPPED_STUDY if path is None else path).read_text())
    data["history"] = {k: [float("nan") if v is None else v for v in vals] for k, vals in data["history"].items()}
    for when in ("before", "after"):
        data[when] = {k: float("nan") if v is None else v for k, v in data[when].items()}
    return data
