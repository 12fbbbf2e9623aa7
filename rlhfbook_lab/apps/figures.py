"""The figures the slides draw at build time, by name: ``![caption](figure:NAME?h=360)`` in a deck.

Each entry is a function that computes with the package (the gold judge, closed-form optima, the estimators, the
training logs stored beside the shipped checkpoints, a greedy reply or two of a shipped model) and returns a
matplotlib figure or an HTML fragment (a table). None trains anything but the four-answer bandit, so a whole deck
builds in seconds, and a figure cannot drift from the code: it *is* the code's output.

Add one with ``@figure("name")``; a deck then refers to it by that name.

Why one module (~700 lines): it is a registry of short, independent figure functions that share one style and one
lookup (:data:`FIGURES`); a figure is found by its name, not by its file.
"""

from __future__ import annotations

import html
import json
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers.utils import logging as hf_logging

from rlhfbook_lab import world
from rlhfbook_lab.apps.render import figure_to_data_uri
from rlhfbook_lab.equations.bandit import (
    BanditConfig,
    optimal_objective,
    optimal_policy,
    optimal_policy_forward_kl,
    train_bandit,
)
from rlhfbook_lab.equations.best_of_n import bon_kl_analytic, bon_kl_exact
from rlhfbook_lab.equations.direct_alignment import dpo_loss
from rlhfbook_lab.equations.evaluation_stats import prompts_needed
from rlhfbook_lab.equations.kl import categorical_kl, kl_k1, kl_k2, kl_k3
from rlhfbook_lab.equations.overoptimization import overoptimization_curve
from rlhfbook_lab.equations.policy_gradient import gae_advantages, ppo_policy_loss, sequence_advantages
from rlhfbook_lab.equations.preferences import elo_ratings, fit_bradley_terry, strengths_to_elo
from rlhfbook_lab.equations.reward_losses import bradley_terry_loss
from rlhfbook_lab.equations.scaling import fit_sigmoid_compute_curve, pass_at_k, pass_at_k_plugin
from rlhfbook_lab.lesson import smooth, use_style
from rlhfbook_lab.lm.data import token_roles as roles_of
from rlhfbook_lab.lm.data import tokenize_conversation
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import flip_labels, pairs_bayes_ceiling, subsample_pairs
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.lm.tokenizer import load_tokenizer
from rlhfbook_lab.lm.tools import tokenize_tool_conversation
from rlhfbook_lab.paths import CHECKPOINTS, DATA_DIR
from rlhfbook_lab.recipes.ai_feedback_sweep import cliff_lr, load_budget, load_sweep, sweep_line
from rlhfbook_lab.recipes.process_rewards import load_process_reward_study
from rlhfbook_lab.recipes.rlvr_study import binned, load_rlvr_log
from rlhfbook_lab.recipes.synthetic_data import CONSTITUTION, annotator_judge, constitution_judge, judge_biases
from rlhfbook_lab.recipes.thinking import load_thinking_study

hf_logging.disable_progress_bar()  # loading a shipped model must not print progress bars into the build log

FIGURES: dict[str, Callable] = {}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def figure(name: str):
    """Register a figure function under ``name``."""
    def register(fn):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is registered twice")
        FIGURES[name] = fn
        return fn
    return register


def render_figure(name: str, caption: str = "", max_height: int | None = None, **kwargs) -> str:
    """The HTML of figure ``name``: an ``<img>`` with the SVG inlined, or the function's own HTML, and a caption."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; the registry has: {', '.join(sorted(FIGURES))}")
    use_style()
    result = FIGURES[name](**kwargs)
    style = f' style="max-height: {max_height}px"' if max_height else ""
    if isinstance(result, str):
        body = f'<div class="table-figure"{style}>{result}</div>'
    else:
        body = f'<img src="{figure_to_data_uri(result)}" alt="{html.escape(caption or name)}"{style}>'
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="figure" data-figure="{name}">{body}{cap}</figure>'


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    def cell(tag, i, v):
        cls = ' class="num"' if i in numeric else ""
        return f"<{tag}{cls}>{v if isinstance(v, str) and v.startswith('<') else html.escape(str(v))}</{tag}>"
    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _log(checkpoint: str) -> dict:
    return json.loads((CHECKPOINTS / checkpoint / "training_log.json").read_text())


# --- lesson 03 · the world, pretraining, temperature ------------------------------------------------------------
RECIPE_STAGES: dict[str, list[tuple[str, str]]] = {
    "InstructGPT (2022)": [("SFT", "human demonstrations"), ("reward model", "human comparisons"),
                           ("PPO", "RM reward − β·KL")],
    "Tülu 3 (2024)": [("SFT", "curated instruction mix"), ("DPO", "on-policy preference pairs"),
                      ("RLVR", "verifiable rewards")],
    "DeepSeek-R1 (2025)": [("cold-start SFT", "long chains of thought"), ("RL (GRPO)", "rule-based rewards"),
                           ("rejection sampling", "SFT on its best samples"), ("RL (GRPO)", "rules + preferences")],
    "this course": [("pretrain", "lesson 03"), ("SFT", "lesson 04"), ("reward model", "lesson 05"),
                    ("RL or DPO", "lessons 06 / 08")],
}
"""Post-training recipes as stages in order (stage, what it learns from), after pretraining (chapter 3 of the book)."""


@figure("recipe_stages")
def recipe_stages(recipes: dict[str, list[tuple[str, str]]] | None = None):
    """Each recipe of ``recipes`` (default ``RECIPE_STAGES``) drawn as a row of boxes joined by arrows."""
    recipes = RECIPE_STAGES if recipes is None else recipes
    width = max(len(stages) for stages in recipes.values())
    fig, ax = plt.subplots(figsize=(11, 0.95 * len(recipes) + 0.4))
    for row, (name, stages) in enumerate(recipes.items()):
        y = len(recipes) - 1 - row
        ax.text(-0.15, y, name, ha="right", va="center", fontsize=10, fontweight="bold")
        for i, (stage, data) in enumerate(stages):
            color = COLORS[0] if "SFT" in stage or stage == "pretrain" else COLORS[1] if "reward" in stage or \
                "DPO" in stage or "sampling" in stage else COLORS[2]
            ax.add_patch(plt.Rectangle((i, y - 0.32), 0.8, 0.64, facecolor=color, alpha=0.18, edgecolor=color))
            ax.text(i + 0.4, y + 0.1, stage, ha="center", va="center", fontsize=9.5)
            ax.text(i + 0.4, y - 0.15, data, ha="center", va="center", fontsize=7.5, color="0.3")
            if i:
                ax.annotate("", xy=(i, y), xytext=(i - 0.2, y), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.set(xlim=(-2.0, width), ylim=(-0.6, len(recipes) - 0.4), title="Post-training recipes, stage by stage")
    ax.axis("off")
    fig.tight_layout()
    return fig


@figure("taste_weights")
def taste_weights() -> str:
    """The gold judge's taste table: the live ``world.GOLD_WEIGHTS``."""
    return _table(["feature", "weight"], [[f"<code>{k}</code>", f"{v:+.2f}"] for k, v in world.GOLD_WEIGHTS.items()],
                  numeric={1})


@figure("scored_replies")
def scored_replies() -> str:
    """Replies to one question in several styles, scored by the gold judge (correctness first, then taste)."""
    p = world.make_problem("addition", (17, 25))
    replies = {
        "plain answer": p.reference,
        "polite opener": world.render_response(p, opener="Sure!"),
        "rambling": world.render_response(p, fillers=2),
        "no final period": world.render_response(p, clean_end=False),
        "polite pile-up": world.render_response(p, opener="Sure! Happy to help! Of course!", fillers=1),
        "wrong but polite": world.render_response(p, opener="Sure!", answer="17 + 25 = 43."),
    }
    rows = [[name, f"<code>{html.escape(text)}</code>", f"{world.gold_score(p, text):+.2f}"]
            for name, text in replies.items()]
    return f"<p class='note'>Prompt: <code>{html.escape(p.prompt)}</code></p>" + _table(
        ["style", "reply", "gold"], rows, numeric={2})


@figure("pretraining_log")
def pretraining_log():
    """``base-tiny``'s pretraining: training loss per step and held-out prefix accuracy every 100 steps."""
    log = _log("base-tiny")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(log["step"], log["losses/train"], alpha=0.25, color=COLORS[0])
    a1.plot(log["step"], smooth(log["losses/train"], 20), color=COLORS[0], label="training loss (smoothed)")
    a1.plot(log["eval/step"], log["eval/heldout_loss"], "o-", color=COLORS[1], label="held-out loss")
    a1.set(xlabel="step", ylabel="nats per token", title="The loss flattens early", ylim=(0, 2.5))
    a1.legend()
    a2.plot(log["eval/step"], [100 * a for a in log["eval/prefix_acc"]], "o-", color=COLORS[2])
    a2.set(xlabel="step", ylabel="held-out prefixes completed correctly (%)", ylim=(0, 100),
           title="...while correct answers keep arriving")
    fig.tight_layout()
    return fig


@figure("temperature")
def temperature(prefix: str = "35 + 47 =", model: str = "base-tiny"):
    """The next-token distribution of a shipped model after ``prefix``, at three temperatures."""

    lm, tok = load_model(model, device="cpu")
    ids = torch.tensor(encode_prompts(tok, [prefix + " "], chat=False))
    with torch.no_grad():
        logits = lm(input_ids=ids).logits[0, -1].double()  # (V,)
    top = torch.topk(logits, 8).indices
    labels = [repr(tok.decode([int(i)])).strip("'") for i in top]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.27
    for k, temp in enumerate((0.3, 1.0, 2.0)):
        p = torch.softmax(logits / temp, -1)[top].numpy()
        entropy = float(-(torch.softmax(logits / temp, -1) * torch.log_softmax(logits / temp, -1)).sum())
        ax.bar(np.arange(8) + (k - 1) * width, p, width, label=f"T = {temp} (entropy {entropy:.2f} nats)")
    ax.set_xticks(np.arange(8), labels)
    ax.set(xlabel=f"next token after “{prefix}”", ylabel="probability",
           title="Higher temperature flattens the distribution")
    ax.legend()
    return fig


# --- lesson 04 · instruction tuning ------------------------------------------------------------------------------
@figure("sft_log")
def sft_log():
    """``sft-tiny``'s training loss and held-out loss, from its stored log."""
    log = _log("sft-tiny")
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(log["step"], log["losses/train"], alpha=0.25, color=COLORS[0])
    ax.plot(log["step"], smooth(log["losses/train"], 20), color=COLORS[0], label="training loss (smoothed)")
    ax.plot(log["eval/step"], log["eval/heldout_loss"], "o-", color=COLORS[1], label="held-out loss")
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="nats per reply token", title="The format in tens of steps, the content in hundreds")
    ax.legend()
    return fig


@figure("token_roles")
def token_roles() -> str:
    """One training conversation, token by token, coloured by its role in the SFT loss."""

    tok = load_tokenizer()
    p = world.make_problem("addition", (17, 25))
    messages = [{"role": "user", "content": p.prompt},
                {"role": "assistant", "content": world.render_response(p, opener="Sure!")}]
    row = tokenize_conversation(tok, messages)
    colors = {"prompt": "#e3e3e3", "response": "#9fd3ea", "eos": "#fbb15f"}
    spans = "".join(f'<span style="background:{colors[role]}">{html.escape(text.replace(" ", "·"))}</span>'
                    for text, role in roles_of(tok, row["input_ids"], row["completion_mask"]))
    names = {"prompt": "prompt (no loss)", "response": "reply (loss)", "eos": "<|end|> (loss)"}
    legend = " ".join(f'<span style="background:{colors[k]}">{html.escape(v)}</span>' for k, v in names.items())
    return f'<div class="tokens">{spans}</div><p class="note tokens">{legend}</p>'


@figure("base_vs_sft")
def base_vs_sft(n: str = "4") -> str:
    """Greedy replies of ``base-tiny`` and ``sft-tiny`` to the same held-out questions, with their gold scores."""

    problems = world.heldout_prompts(int(n), seed=0)
    rows = []
    replies = {}
    for name in ("base-tiny", "sft-tiny"):
        lm, tok = load_model(name, device="cpu")
        replies[name] = generate(lm, tok, [q.prompt for q in problems], max_new_tokens=40, greedy=True).texts
    for i, q in enumerate(problems):
        for name in replies:
            text = replies[name][i]
            shown = text.replace("\n", " ⏎ ")
            short = shown if len(shown) <= 46 else shown[:45] + "…"
            rows.append([q.prompt if name == "base-tiny" else "", name, f"<code>{html.escape(short)}</code>",
                         f"{world.gold_score(q, text, allow_empty=True):+.2f}"])
    return _table(["held-out question", "model", "greedy reply", "gold"], rows, numeric={3})


# --- lesson 05 · reward models -----------------------------------------------------------------------------------
@figure("bt_loss")
def bt_loss():
    """The Bradley-Terry loss and its push against the reward gap, with Llama 2's margin."""
    d = torch.linspace(-6, 6, 241)
    zero = torch.zeros_like(d)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(d, bradley_terry_loss(d, zero, reduction="none"), label=r"loss $-\log\sigma(r_c - r_r)$")
    ax.plot(d, torch.sigmoid(-d), "--", label=r"push $\sigma(r_r - r_c)$")
    ax.plot(d, bradley_terry_loss(d, zero, margin=torch.full_like(d, 2.0), reduction="none"), ":",
            label="loss with margin m = 2 (Llama 2)")
    ax.set(xlabel=r"reward gap $r_c - r_r$", ylabel="nats", ylim=(0, 4),
           title="The loss never stops pushing; it only slows down")
    ax.legend()
    return fig


@figure("rm_log")
def rm_log():
    """``rm-tiny``'s training loss and pairwise accuracy, from its stored log."""
    log = _log("rm-tiny")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.plot(log["step"], log["losses/train"], alpha=0.3, color=COLORS[0])
    a1.plot(log["step"], smooth(log["losses/train"], 10), color=COLORS[0])
    a1.axhline(np.log(2), ls="--", color="gray", label="ln 2 (a coin)")
    a1.set(xlabel="step", ylabel="Bradley-Terry loss", title="Loss")
    a1.legend()
    a2.plot(log["step"], smooth(log["rewards/accuracies"], 10), color=COLORS[2])
    a2.set(xlabel="step", ylabel="training accuracy (smoothed)", title="Accuracy", ylim=(0.4, 1.0))
    fig.tight_layout()
    return fig


# --- lesson 06 · policy gradients --------------------------------------------------------------------------------
@figure("group_advantages")
def group_advantages():
    """The four group baselines' advantages on three groups of 8 verifier rewards."""
    groups = {"3 of 8 right": [1, 0, 0, 1, 0, 0, 1, 0], "7 of 8 right": [1, 1, 1, 1, 0, 1, 1, 1],
              "4 of 8 right": [1, 0, 1, 0, 1, 0, 1, 0]}
    names = {"reinforce": "REINFORCE (mean)", "rloo": "RLOO", "grpo": "GRPO (÷ std)", "dr_grpo": "Dr. GRPO"}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, (title, rewards) in zip(axes, groups.items()):
        r = torch.tensor(rewards, dtype=torch.float32)
        for k, est in enumerate(names):
            adv = sequence_advantages(r, est, len(rewards))
            right, wrong = adv[r == 1][0].item(), adv[r == 0][0].item()
            ax.bar([k - 0.2, k + 0.2], [right, wrong], 0.4, color=[COLORS[2], COLORS[3]])
        ax.set_xticks(range(4), list(names.values()), rotation=25, ha="right")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(title)
    axes[0].set_ylabel("advantage (green: right, red: wrong)")
    fig.tight_layout()
    return fig


@figure("bandit_runs")
def bandit_runs(steps: str = "200"):
    """The four algorithms on the bandit (seed 0): the fraction of J* reached, step by step."""
    cfg = BanditConfig(num_steps=int(steps))
    j_star = optimal_objective(torch.tensor(cfg.rewards, dtype=torch.float64),
                               torch.tensor(cfg.ref_probs, dtype=torch.float64), cfg.beta).item()
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for algo, label in (("reinforce", "REINFORCE"), ("rloo", "RLOO"), ("ppo", "PPO"), ("grpo", "GRPO (canonical)")):
        torch.manual_seed(0)
        history = train_bandit(cfg, algo)
        ax.plot(np.array(history["charts/J"]) / j_star, label=label)
    ax.axhline(1.0, ls="--", color="gray", lw=1)
    ax.set(xlabel="step", ylabel=r"$J(\pi)\,/\,J^*$", ylim=(0.3, 1.05), title="Graded against the exact optimum")
    ax.legend(loc="lower right")
    return fig


@figure("ppo_clip")
def ppo_clip(eps: str = "0.2"):
    """PPO's clipped per-token objective against the probability ratio, for a positive and a negative advantage."""
    ratios = torch.linspace(0.4, 1.8, 281)
    mask = torch.ones(len(ratios), 1)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for adv, color in ((1.0, COLORS[2]), (-1.0, COLORS[3])):
        loss, _ = ppo_policy_loss(torch.log(ratios)[:, None], torch.zeros(len(ratios), 1),
                                  torch.full((len(ratios),), adv), mask, float(eps))
        ax.plot(ratios, -loss[:, 0], color=color, label=f"A = {adv:+.0f}")
    for x in (1 - float(eps), 1 + float(eps)):
        ax.axvline(x, ls=":", color="gray")
    ax.set(xlabel=r"ratio $\rho = \pi_\theta / \pi_{old}$", ylabel=r"objective $\min(\rho A, \mathrm{clip}(\rho) A)$",
           title="Flat (no gradient) once the ratio moved ε the way A wants")
    ax.legend()
    return fig


@figure("gae_lambdas")
def gae_lambdas():
    """GAE advantages of a 3-token response (reward 1 at the end, V = 0.5, 0.6, 0.7) for several λ."""
    rewards, values, mask = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), torch.ones(1, 3)
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    lams = (0.0, 0.5, 0.95, 1.0)
    for k, lam in enumerate(lams):
        adv, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=lam)
        ax.bar(np.arange(3) + (k - 1.5) * 0.2, adv[0].numpy(), 0.2, label=f"λ = {lam}")
    ax.set_xticks(range(3), ["token 1", "token 2", "token 3"])
    ax.set(ylabel=r"advantage $\hat A_t$", title="λ = 0: one TD step; λ = 1: the return minus V")
    ax.legend()
    return fig


# --- lessons 08 and 15 · the KL-regularised optimum -------------------------------------------------------------
def _bandit_tensors():
    cfg = BanditConfig()
    return cfg, torch.tensor(cfg.rewards, dtype=torch.float64), torch.tensor(cfg.ref_probs, dtype=torch.float64)


def draw_optimal_policy(ax, beta: float) -> None:
    """On ``ax``: the bandit's π_ref and π* ∝ π_ref·exp(r/β) at ``beta`` (the drawing behind the lessons' β knob)."""
    cfg, rewards, ref = _bandit_tensors()
    x = np.arange(len(cfg.rewards))
    ax.bar(x - 0.2, ref.numpy(), 0.4, color="gray", label=r"$\pi_{ref}$")
    ax.bar(x + 0.2, optimal_policy(rewards, ref, beta).numpy(), 0.4, color=COLORS[0], label=r"$\pi^*$")
    ax.set_xticks(x, [f"r = {v:g}" for v in cfg.rewards])
    ax.set(ylim=(0, 1), ylabel="probability", xlabel="answer (by its reward)")
    ax.legend(fontsize=8)


@figure("optimal_policy_betas")
def optimal_policy_betas(betas: str = "0.05,0.2,1,5"):
    """π* ∝ π_ref·exp(r/β) on the bandit, for several β, next to π_ref."""
    cfg, rewards, ref = _bandit_tensors()
    values = [float(b) for b in betas.split(",")]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / (len(values) + 1)
    ax.bar(np.arange(4) - 0.4 + width / 2, ref.numpy(), width, color="gray", label=r"$\pi_{ref}$")
    for k, beta in enumerate(values):
        ax.bar(np.arange(4) - 0.4 + (k + 1.5) * width, optimal_policy(rewards, ref, beta).numpy(), width,
               label=rf"$\pi^*$, β = {beta:g}")
    labels = [f"“{r if len(r) < 22 else r[:20] + '…'}”\nr = {v:g}" for r, v in zip(cfg.responses, cfg.rewards)]
    ax.set_xticks(range(4), labels)
    ax.set(ylabel="probability", title="Small β: follow the reward; large β: stay with the reference")
    ax.legend(ncol=2)
    return fig


@figure("dpo_loss")
def dpo_loss_figure():
    """The DPO loss and each pair's gradient weight against the implicit-reward margin."""
    h = torch.linspace(-5, 5, 201)  # β·(log-ratio of chosen − log-ratio of rejected), β = 1
    zero = torch.zeros_like(h)
    out = dpo_loss(h, zero, zero, zero, beta=1.0)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(h, out.losses, label=r"loss $-\log\sigma(h)$")
    ax.plot(h, torch.sigmoid(-h), "--", label=r"gradient weight $\sigma(-h)$")
    ax.axhline(np.log(2), ls=":", color="gray", label="ln 2 at step 0 (π = π_ref)")
    ax.set(xlabel=r"margin $h = \hat r(x, y_w) - \hat r(x, y_l)$", ylabel="nats",
           title="Pairs already ranked right stop pulling")
    ax.legend()
    return fig


@figure("reward_kl_frontier")
def reward_kl_frontier():
    """The exact reward–KL frontier of the bandit: π* (reverse KL) and the forward-KL optimum, swept over β / λ."""
    _, rewards, ref = _bandit_tensors()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for fn, label, style in ((optimal_policy, r"$\pi^*$ (KL in $J$: reverse)", "-"),
                             (optimal_policy_forward_kl, r"forward-KL optimum (k3 loss, SFT mixing)", "--")):
        kls, rs = [], []
        for coef in np.geomspace(0.01, 20, 80):
            pi = fn(rewards, ref, float(coef))
            kls.append(categorical_kl(pi, ref, from_logits=False).item())
            rs.append(float((pi * rewards).sum()))
        ax.plot(kls, rs, style, label=label)
    ax.scatter([0], [float((ref * rewards).sum())], color="black", zorder=3, label=r"$\pi_{ref}$")
    ax.set(xlabel=r"KL$(\pi\,\|\,\pi_{ref})$ (nats)", ylabel=r"expected reward $E_\pi[r]$",
           title="The reverse KL buys more reward per nat")
    ax.legend(loc="lower right")
    return fig


@figure("kl_estimators")
def kl_estimators(samples: str = "200000"):
    """k1, k2, k3 against the exact KL: relative bias (± 2 standard errors) and the spread of one sample's
    estimate, as the policy moves away from its reference along a fixed direction in logit space."""
    gen = torch.Generator().manual_seed(0)
    ref_logits = torch.randn(10, generator=gen, dtype=torch.float64)
    direction = torch.randn(10, generator=gen, dtype=torch.float64)
    ref_logp = torch.log_softmax(ref_logits, -1)
    n = int(samples)
    rows = {name: ([], [], [], []) for name in ("k1", "k2", "k3")}
    for s in np.linspace(0.05, 3.0, 14):
        logp = torch.log_softmax(ref_logits + s * direction, -1)
        exact = categorical_kl(logp, ref_logp).item()
        y = torch.multinomial(logp.exp(), n, replacement=True, generator=gen)  # samples from the policy
        for name, fn in (("k1", kl_k1), ("k2", kl_k2), ("k3", kl_k3)):
            est = fn(logp[y], ref_logp[y])
            x, bias, err, spread = rows[name]
            x.append(exact)
            bias.append(100 * (est.mean().item() - exact) / exact)
            err.append(200 * est.std().item() / exact / n ** 0.5)
            spread.append(est.std().item() / exact)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.5))
    for name, (x, bias, err, spread) in rows.items():
        a1.errorbar(x, bias, yerr=err, fmt="o-", ms=3, capsize=2, label=name)
        a2.plot(x, spread, "o-", ms=3, label=name)
    a1.axhline(0, color="black", lw=0.8)
    a1.set(xscale="log", xlabel="exact KL (nats)", ylabel="relative bias (%), ± 2 s.e.",
           title=f"k2 is biased ({n:,} samples a point)")
    a2.set(xscale="log", yscale="log", xlabel="exact KL (nats)", ylabel="std of one sample / KL",
           title="k3 is tight near the reference")
    a1.legend()
    fig.tight_layout()
    return fig


# --- lesson 10 · preferences -------------------------------------------------------------------------------------
@figure("arena_fit")
def arena_fit(battles: str = "600"):
    """A synthetic arena: six systems with known strengths, Bradley-Terry fitted on all battles, Elo replayed in
    30 random orders."""
    rng = np.random.default_rng(0)
    true = np.array([1.5, 1.0, 0.6, 0.0, -0.8, -2.3])
    true = true - true.mean()
    n = len(true)
    comparisons = []
    for _ in range(int(battles)):
        i, j = rng.choice(n, 2, replace=False)
        win = rng.random() < 1 / (1 + np.exp(-(true[i] - true[j])))
        comparisons.append((i, j) if win else (j, i))
    comparisons = np.array(comparisons)
    theta = fit_bradley_terry(comparisons, n)
    elo = np.array([elo_ratings(comparisons[rng.permutation(len(comparisons))], n, k_factor=32) for _ in range(30)])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    a1.plot(true, theta, "o", ms=8)
    a1.plot([-2.5, 2], [-2.5, 2], "--", color="gray")
    a1.set(xlabel="true strength", ylabel="Bradley-Terry fit", title=f"The fit recovers the strengths ({battles} "
                                                                      "battles)")
    a2.boxplot(elo, tick_labels=[f"S{i + 1}" for i in range(n)])
    a2.plot(range(1, n + 1), strengths_to_elo(theta), "x", color=COLORS[3], ms=9, label="BT fit on the Elo scale")
    a2.set(ylabel="final Elo rating", title="Elo (K = 32) depends on the order")
    a2.legend()
    fig.tight_layout()
    return fig


@figure("annotator_weights")
def annotator_weights() -> str:
    """The world's four annotators: the weights each puts on the taste features, and their temperature τ."""
    features = list(world.FEATURES)
    rows = [[name] + [f"{ann.weights.get(f, 0.0):+.2f}" for f in features] + [f"{ann.tau:g}"]
            for name, ann in world.ANNOTATORS.items()]
    return _table(["annotator"] + [f"<code>{f}</code>" for f in features] + ["τ"], rows,
                  numeric=set(range(1, len(features) + 2)))


# --- lesson 11 · preference data ---------------------------------------------------------------------------------
@figure("pair_gaps")
def pair_gaps():
    """Gold-score gaps of the shipped held-out pairs, on-policy vs off-policy."""

    rows = load_preference_file("heldout")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bins = np.linspace(0, 2.0, 41)
    for origin, color in (("on_policy", COLORS[0]), ("off_policy", COLORS[1])):
        gaps = [abs(world.gold_score(r["prompt"], r["chosen"]) - world.gold_score(r["prompt"], r["rejected"]))
                for r in rows if r["origin"] == origin]
        ax.hist(gaps, bins=bins, alpha=0.6, color=color, density=True, label=f"{origin.replace('_', '-')} "
                                                                               f"({len(gaps)} pairs)")
    ax.set(xlabel="|gold(a) − gold(b)|", ylabel="density", title="Off-policy pairs differ more: easier labels")
    ax.legend()
    return fig


@figure("ceiling_vs_noise")
def ceiling_vs_noise():
    """The Bayes ceiling of the shipped held-out pairs as symmetric label noise ε grows."""

    rows = load_preference_file("heldout")
    eps = np.linspace(0, 0.5, 11)
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for origin, color in (("on_policy", COLORS[0]), ("off_policy", COLORS[1])):
        part = [r for r in rows if r["origin"] == origin]
        ax.plot(eps, [pairs_bayes_ceiling(flip_labels(part, float(e), seed=0)[0]) for e in eps], "o-",
                color=color, label=origin.replace("_", "-"))
    ax.axhline(0.5, ls=":", color="gray")
    ax.set(xlabel="label noise ε (share of labels flipped)", ylabel="Bayes ceiling",
           title="Noise shrinks the ceiling linearly to a coin at ε = ½")
    ax.legend()
    return fig


@figure("preference_counts")
def preference_counts() -> str:
    """The shipped preference data: prompts, candidate pairs, identical pairs dropped, pairs kept (``meta.json``)."""
    meta = json.loads((DATA_DIR / "preferences" / "meta.json").read_text())
    rows = []
    for split in ("train", "heldout"):
        counts = meta["counts"][split]
        for origin in ("on_policy", "off_policy"):
            rows.append([split, origin.replace("_", "-"), meta["n_prompts"][split][origin],
                         counts[f"{origin}/candidates"], counts[f"{origin}/identical"], counts[f"{origin}/kept"]])
    return _table(["split", "origin", "prompts", "candidates", "identical (dropped)", "kept"], rows,
                  numeric={2, 3, 4, 5})



# --- lesson 13 · tool use ----------------------------------------------------------------------------------------
@figure("tool_mask")
def tool_mask(prompt: str = "What is 123 + 456?", reply: str = "[calculator(123+456) -> 579] The answer is 579."):
    """A reply with a tool call, token by token: the model's tokens (targets, log-probs) and the tool's result
    (in the context, never a target): ``lm.tools.tokenize_tool_conversation``."""
    tok = load_tokenizer()
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    row = tokenize_tool_conversation(tok, messages)
    start = row["completion_mask"].index(1)
    cells = list(zip(row["input_ids"], row["completion_mask"], row["tool_mask"]))[start:]
    fig, ax = plt.subplots(figsize=(13, 1.5))
    colors = {"model": "#9fd3ea", "tool": "#fbb15f"}
    for x, (i, _, is_tool) in enumerate(cells):
        role = "tool" if is_tool else "model"
        ax.add_patch(plt.Rectangle((x, 0), 0.95, 1, color=colors[role]))
        text = tok.decode([i]).replace(" ", "·")
        ax.text(x + 0.47, 0.5, "E" if i == tok.eos_token_id else text, ha="center", va="center", fontsize=11,
                family="monospace")
    for role, label in (("model", "written by the model: a target, in log-probs and KL"),
                        ("tool", "written by the tool: read, never a target")):
        ax.add_patch(plt.Rectangle((0, 0), 0, 0, color=colors[role], label=label))
    ax.set(xlim=(0, len(cells)), ylim=(0, 1))
    ax.axis("off")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    return fig


@figure("bon_kl")
def bon_kl():
    """Best-of-n's KL: the analytic log n − (n − 1)/n against the exact KL on a 4-answer bandit (with a tie)."""
    probs, scores = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.0, 1.0, 1.0, 2.0])
    ns = np.unique(np.geomspace(1, 1024, 40).astype(int))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(ns, [bon_kl_analytic(int(n)) for n in ns], label=r"analytic $\log n - (n-1)/n$")
    ax.plot(ns, [bon_kl_exact(probs, scores, int(n)) for n in ns], "--", label="exact (4 answers, one tie)")
    ax.axhline(np.log(1 / probs[-1]), color="grey", lw=0.8, ls=":", label=r"$\log 1/\pi(y_{best})$")
    ax.set(xscale="log", xlabel="n", ylabel="KL (nats)", title="The analytic KL is an upper bound")
    ax.legend()
    return fig


@figure("gao_forms")
def gao_forms():
    """Gao et al.'s gold curves against d = √KL: best-of-n d(α − βd) and RL d(α − β log d)."""
    d = np.linspace(0, 6, 200)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(d, overoptimization_curve(d, 1.0, 0.25, "bon"), label=r"best-of-n  $d(\alpha - \beta d)$")
    ax.plot(d, overoptimization_curve(d, 1.0, 0.6, "rl"), "--", label=r"RL  $d(\alpha - \beta \log d)$")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel=r"$d = \sqrt{KL}$", ylabel="gold gain", title="Both rise, peak and fall: α = 1, β = 0.25 and 0.6")
    ax.legend()
    return fig


@figure("power")
def power():
    """Prompts needed to detect a gain at 80 % power (α = 0.05), by the spread of per-prompt differences."""
    effects = np.linspace(0.01, 0.2, 60)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for sd, style in ((0.05, "-"), (0.3, "--"), (0.6, ":")):
        ax.plot(effects, [prompts_needed(sd, float(e)) for e in effects], style, label=f"sd of differences {sd}")
    ax.set(yscale="log", xlabel="gain to detect (gold)", ylabel="prompts needed",
           title="Pairing shrinks the spread, and the spread sets the bill")
    ax.legend()
    return fig


@figure("pass_at_k_bias")
def pass_at_k_bias(n: str = "16"):
    """pass@k from c correct of n samples: the unbiased estimator against the plug-in 1 − (1 − c/n)^k."""
    n_ = int(n)
    ks = np.arange(1, n_ + 1)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for c, colour in ((1, "C0"), (4, "C1"), (8, "C2")):
        ax.plot(ks, [pass_at_k(n_, c, int(k)) for k in ks], color=colour, label=f"c = {c}: unbiased")
        ax.plot(ks, [pass_at_k_plugin(n_, c, int(k)) for k in ks], "--", color=colour, label=f"c = {c}: plug-in")
    ax.set(xlabel="k", ylabel="pass@k", title=f"From c correct of n = {n_}: the plug-in is biased low")
    ax.legend(ncol=3, fontsize=8)
    return fig


@figure("spec_change")
def spec_change(changed: str = "no_openers"):
    """The gold weights of the shipped spec next to a changed one (``data/spec/*.json``)."""
    base, other = world.load_spec("default"), world.load_spec(changed)
    names = list(base.weights)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(x - 0.2, [base.weights[k] for k in names], 0.4, label="default")
    ax.bar(x + 0.2, [other.weights[k] for k in names], 0.4, label=changed)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x, [k.replace("_", " ") for k in names], rotation=20, fontsize=8)
    ax.set(ylabel="gold weight", title="One row changed: the world now dislikes a polite opener")
    ax.legend()
    return fig


@figure("principle_agreement")
def principle_agreement(pairs: str = "256"):
    """Agreement with held-out gold labels of a judge applying one principle of the constitution, the whole
    constitution (one principle drawn per pair) and the gold annotator, beside the Bayes ceiling (lesson 12)."""
    rows = subsample_pairs(load_preference_file("heldout"), int(pairs), seed=0)
    judges = {name: constitution_judge({name: text}) for name, text in CONSTITUTION.items()}
    judges.update({"constitution": constitution_judge(), "gold annotator": annotator_judge("gold", seed=1)})
    out = {name: judge_biases(j, rows) for name, j in judges.items()}
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(range(len(out)), [o["agreement"] for o in out.values()], color=[COLORS[0]] * 5 + [COLORS[1], COLORS[2]])
    ax.axhline(out["constitution"]["bayes_ceiling"], color="k", ls="--", lw=1, label="Bayes ceiling")
    ax.axhline(0.5, color="grey", lw=0.8, label="chance")
    ax.set_xticks(range(len(out)), [n.replace("_", " ") for n in out], rotation=15, fontsize=8)
    ax.set(ylim=(0.3, 1.0), ylabel="agreement with gold labels",
           title="One principle at a time loses the weights; the constitution mixes them")
    ax.legend(loc="upper left", fontsize=8)
    return fig


@figure("dpo_lr_sweep")
def dpo_lr_sweep(path: str | None = None):
    """The shipped DPO sweep of lesson 12 §2 (``recipes.ai_feedback_sweep.load_sweep``): held-out gold gain over SFT
    (± 2 paired s.e.) and KL(π ‖ π_SFT) against DPO's learning rate, one line per labeller × β; a thin vertical line
    marks each line's cliff (``cliff_lr``)."""
    sweep = load_sweep(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    betas = sweep["grid"]["betas"]
    for labels in sweep["grid"]["labels"]:
        for beta in betas:
            line = sweep_line(sweep, labels, beta)
            lrs = [r["lr"] for r in line]
            style = dict(color=COLORS[0] if labels == "ai" else COLORS[2], ls="-" if beta == betas[0] else "--",
                         marker="o" if beta == betas[0] else "s", label=f"{labels} labels, β {beta:g}")
            ax1.errorbar(lrs, [r["gain"]["diff"] for r in line], yerr=[2 * r["gain"]["se"] for r in line],
                         capsize=3, **style)
            ax2.plot(lrs, [r["kl"] for r in line], **style)
            cliff = cliff_lr(sweep, labels, beta)
            if cliff is not None:
                ax1.axvline(cliff, color=style["color"], ls=style["ls"], lw=0.8, alpha=0.5)
    ax1.axhline(0, color="k", lw=0.8)
    ax1.set(xscale="log", xlabel="DPO peak learning rate", ylabel="held-out gold − SFT (± 2 s.e.)",
            title="Gold rises, peaks near 1e-4, then falls off a cliff")
    ax2.set(xscale="log", yscale="log", xlabel="DPO peak learning rate", ylabel="KL(π ‖ π_SFT), nats per reply",
            title="How far each run moved from SFT")
    ax1.legend(fontsize=8)
    return fig


@figure("label_budget")
def label_budget(path: str | None = None):
    """The shipped label-budget study of lesson 12 §2 (``recipes.ai_feedback_sweep.load_budget``): n gold labels
    spent two ways, on a reward model that then labels the study's pairs for DPO, or on DPO directly; held-out
    gold gain over SFT (± 2 paired s.e.) and the reward model's held-out accuracy against n."""
    study = load_budget(path)
    ns = [p["n"] for p in study["points"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, color, label in (("ai", COLORS[0], "DPO on the labels of an RM trained on n"),
                              ("direct", COLORS[2], "DPO on the n gold labels directly")):
        ax1.errorbar(ns, [p[key]["gain"]["diff"] for p in study["points"]],
                     yerr=[2 * p[key]["gain"]["se"] for p in study["points"]], color=color, marker="o", capsize=3,
                     label=label)
    ax1.axhline(0, color="k", lw=0.8)
    ax1.set(xscale="log", xlabel="gold labels spent, n", ylabel="held-out gold − SFT (± 2 s.e.)",
            title="The same gold labels, spent two ways")
    ax1.legend(fontsize=8)
    ax2.plot(ns, [p["rm"]["heldout_accuracy"] for p in study["points"]], "o-", color=COLORS[1],
             label="RM held-out accuracy")
    ax2.plot(ns, [p["rm"]["label_agreement"] for p in study["points"]], "s--", color=COLORS[4],
             label="its labels agree with the gold annotator")
    ax2.axhline(study["points"][0]["rm"]["bayes_ceiling"], color="k", ls=":", lw=1, label="Bayes ceiling")
    ax2.set(xscale="log", xlabel="gold labels spent, n", ylabel="share", ylim=(0.4, 1.0),
            title="The labeller's quality against its budget")
    ax2.legend(fontsize=8)
    return fig


# --- lesson 07 · a long RLVR run: length dynamics and compute scaling ----------------------------------------------


@figure("rlvr_lengths")
def rlvr_lengths(runs: str = "grpo,dr_grpo"):
    """Reply length of right and wrong replies, and the gold judge's rambling and repetition features, over the
    shipped long RLVR runs ``runs`` (comma-separated names of ``recipes.rlvr_study.SHIPPED_RUNS``: one line style
    per run; means over windows of 10 rollouts)."""
    names = [r for r in runs.split(",") if r] if isinstance(runs, str) else list(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run, style in zip(names, ("o-", "s--", "^:")):
        h = load_rlvr_log(run)["history"]
        for color, (key, label) in enumerate((("charts/length_correct", "right"), ("charts/length_wrong", "wrong"))):
            ax1.plot(*binned(h, key, x="step"), style, color=f"C{color}", ms=3, label=f"{run}: {label}")
        for color, (key, label) in enumerate((("charts/extra_words", "extra words"), ("charts/repetition",
                                                                                       "repeated 3-grams"))):
            ax2.plot(*binned(h, key, x="step"), style, color=f"C{color + 2}", ms=3, label=f"{run}: {label}")
    ax1.set(xlabel="rollout", ylabel="completion tokens", title="Reply length over training")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="rollout", ylabel="per reply (gold judge's features)", title="What the gold judge penalises")
    ax2.legend(fontsize=7)
    return fig


@figure("rlvr_kl")
def rlvr_kl(runs: str = "grpo,grpo_kl"):
    """Training-sample pass@1 (windows of 10 rollouts), held-out greedy accuracy (every 10 rollouts) and the KL to
    ``sft-tiny`` over the shipped long RLVR runs ``runs`` (comma-separated), labelled by their β."""
    names = [r for r in runs.split(",") if r] if isinstance(runs, str) else list(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, run in enumerate(names):
        log = load_rlvr_log(run)
        h, label = log["history"], f"{log['algo']}, β = {log.get('beta', 0.0):g}"
        ax1.plot(*binned(h, "charts/correct_rate", x="step"), "o-", color=f"C{i}", ms=3,
                 label=f"{label}: pass@1 (training)")
        ax1.plot(h["eval/step"], h["eval/correct_rate"], "s:", color=f"C{i}", ms=3, label=f"{label}: greedy (held out)")
        ax2.plot(h["step"], h["kl/seq"], color=f"C{i}", lw=0.8, alpha=0.5)
        ax2.plot(*binned(h, "kl/seq", x="step"), "o-", color=f"C{i}", ms=3, label=label)
    ax1.set(xlabel="rollout", ylabel="accuracy on addition", title="Accuracy with and without the KL penalty")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="rollout", ylabel="KL to sft-tiny (nats per reply)", title="The penalty holds the policy near sft")
    ax2.legend(fontsize=8)
    return fig


@figure("thinking_forms")
def thinking_forms():
    """The shipped ``sum3`` study (``recipes.thinking``): held-out accuracy with the step written or not (each
    form forced by a prefix) before and after GRPO on the final answer, and the share of sampled replies that write
    the step over the RL run."""
    study = load_thinking_study()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    cols = [("forced_step", "step\nforced"), ("forced_direct", "answer alone\nforced"), ("greedy", "free\n(greedy)"),
            ("sampled", "free\n(T = 1)")]
    x = np.arange(len(cols))
    for i, (when, label) in enumerate((("before", "after SFT"), ("after", "after GRPO"))):
        ax1.bar(x + (i - 0.5) * 0.38, [study[when][k] for k, _ in cols], 0.38, label=label)
    ax1.set_xticks(x, [label for _, label in cols], fontsize=8)
    ax1.set(ylim=(0, 1.05), ylabel="held-out accuracy (sum3)", title="Writing the step is what makes it right")
    ax1.legend(fontsize=8)
    h = study["history"]
    steps = np.arange(1, len(h["step_share"]) + 1)
    ax2.plot(steps, h["step_share"], "o-", ms=3, label="share of replies writing the step")
    ax2.plot(steps, h["reward"], "s-", ms=3, label="reward (final answer right)")
    ax2.set(ylim=(0, 1.05), xlabel="GRPO rollout", title="Rewarded on the answer only, the step takes over")
    ax2.legend(fontsize=8)
    return fig


@figure("process_rewards")
def process_rewards(path: str | None = None):
    """The shipped ORM/PRM study of lesson 05 §9 (``recipes.process_rewards``): held-out best-of-n accuracy on
    ``sum3`` (mean over problems ± 2 s.e.) against n, the reply picked by the Bradley-Terry ``rm-tiny``, the ORM, the
    PRM (min of its steps), the ORM whose head reads the hidden state alone, and the checker."""
    study = load_process_reward_study(path)
    ns, bon = study["ns"], study["best_of_n"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for key, color, marker, label in (("gold", "k", "s", "gold checker (pass@n)"),
                                      ("prm_min", COLORS[2], "o", "PRM (min over steps)"),
                                      ("orm", COLORS[0], "^", "ORM"),
                                      ("orm_hidden", "#888888", "x", "ORM, head on the hidden state alone"),
                                      ("bt_rm", COLORS[3], "v", "Bradley-Terry rm-tiny")):
        ax.errorbar(ns, bon[key]["mean"], yerr=[2 * se for se in bon[key]["se"]], color=color, marker=marker,
                    capsize=3, label=label, ls={"gold": "--", "orm_hidden": ":"}.get(key, "-"))
    ax.set(xscale="log", xlabel="n (replies sampled per problem)", ylabel="accuracy of the picked reply",
           title="Verifiers reading the policy's surprise climb toward gold; taste falls")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.legend(fontsize=8)
    return fig


@figure("rl_compute_scaling")
def rl_compute_scaling(algo: str = "grpo"):
    """Training-sample accuracy against cumulative training FLOPs over the shipped long RLVR run, with the sigmoid
    of "The Art of Scaling RL Compute" fitted to windows of 10 rollouts."""
    h = load_rlvr_log(algo)["history"]
    C, acc = binned(h, "charts/correct_rate")
    fit = fit_sigmoid_compute_curve(C, acc, R0=h["charts/correct_rate"][0])  # R0: the first rollout, before any update
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(h["flops/cumulative"], h["charts/correct_rate"], ".", ms=2, alpha=0.4, label="each rollout (128 samples)")
    ax.plot(C, acc, "o", ms=4, label="mean of 10 rollouts")
    grid = np.geomspace(C.min() / 3, C.max() * 10, 200)
    ax.plot(grid, fit.predict(grid), label=f"sigmoid fit: A = {fit.A:.2f}, B = {fit.B:.2f}")
    ax.axhline(fit.A, color="grey", ls=":", lw=0.8)
    ax.set(xscale="log", xlabel="training FLOPs (cumulative, log scale)", ylabel="pass@1 at T = 1 (training prompts)",
           title="Accuracy rises with RL compute, then saturates")
    ax.legend(fontsize=8)
    return fig
