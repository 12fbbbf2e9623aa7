"""Evaluation (RLHF Book, ch. 16): a report card for a set of players, an arena, and the traps of AI judges, all
measured against the world's gold judge, the truth real evaluations never have.

A *player* is a system that answers prompts: a checkpoint with a decoding setting (``"sft-tiny"`` greedy,
``"sft-tiny@0.7"`` sampled at temperature 0.7), or any list of replies (a restyled model, :func:`restyle`).
Everything below takes ``players``: ``{name: [reply per problem]}`` on one list of held-out problems.

- :func:`report_card`: per player and family, gold score with bootstrap 95 % intervals over prompts, accuracy
  and centred accuracy ((acc − chance)/(1 − chance), :data:`CHANCE`), paired gold differences against a
  baseline, and the prompts a paired test would need to detect a 2-point gain (``equations.evaluation_stats``).
- :func:`sampling_spread`: the same checkpoint's gold across sampling seeds (run-to-run noise).
- :func:`run_battles` / :func:`arena`: Chatbot-Arena battles on random prompts between random pairs, judged by a
  gold annotator (``world.ANNOTATORS["gold"]``) or an AI judge (the reward model's scores,
  :func:`score_judge`); Bradley-Terry Elo with bootstrap intervals (``evaluation_stats.arena_elo``), and each
  judge's ranking scored against the true skill (mean gold) by Kendall's τ.
- :func:`judge_traps`: position bias (the same battle asked in both orders), verbosity bias (how often the judge
  picks the longer reply, against how often the truth does); :func:`self_preference`: does the judge reward
  what its own backbone finds likely (:func:`reply_logprobs`), at equal gold?
- :func:`lc_vs_raw`: every player against a baseline, judge verdicts turned into raw and length-controlled win
  rates, both rankings against gold.
- :func:`evaluate_players` / :func:`write_report`: all of it for ``rlhfbook-lab eval``.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int
from rlhfbook_lab.equations.agreement import kendall_tau
from rlhfbook_lab.equations.evaluation_stats import (
    arena_elo,
    bootstrap_ci,
    centred_accuracy,
    length_controlled_win_rate,
    paired_difference,
    prompts_needed,
    swap_consistency,
)
from rlhfbook_lab.lm.data import collate_sft, conversation, tokenize_conversation
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.forward import eval_mode, sequence_logps
from rlhfbook_lab.lm.models import check_output_folder, load_model
from rlhfbook_lab.lm.reward_model import load_reward_model, score_replies
from rlhfbook_lab.paths import atomic_folder
from rlhfbook_lab.world.judge import FILLERS
from rlhfbook_lab.world.tasks import ATTRIBUTES

__all__ = ["CHANCE", "VERBOSE_JUDGE", "annotator_judge", "arena", "evaluate_players", "judge_traps", "lc_vs_raw",
           "ngram_overlap", "parse_player", "player_replies", "position_biased", "reply_logprobs", "report_card",
           "restyle", "rm_scores", "run_battles", "sampling_spread", "score_judge", "self_preference", "write_report"]

CHANCE: dict[str, float] = {
    "addition": 0.0,
    "reverse": 0.0,
    "creatures": 1.0 / len(ATTRIBUTES["color"]),
    "review": 0.5,
}
"""Accuracy of the best blind guess in each family's answer format: a sum or a reversed word cannot be guessed
(0); a creature's attribute is one of 8 values (1/8); a review in the right form has the asked sentiment half
the time (1/2)."""

VERBOSE_JUDGE = world.Annotator("verbose-judge", {**world.GOLD_WEIGHTS, "extra_words": 0.05, "polite_excess": 0.0})
"""A stand-in for an LLM judge with the verbosity bias AlpacaEval measured (Dubois et al. 2024): the gold taste,
except that every extra word *earns* 0.05 where gold charges 0.03, and piled-up politeness costs nothing."""


# --- players ------------------------------------------------------------------------------------------------


def parse_player(spec: str) -> tuple[str, float | None]:
    """``"name"`` → (name, None: greedy); ``"name@T"`` → (name, T: sampled at temperature T > 0)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a player must be a checkpoint name or folder, optionally '@T'; got {spec!r}")
    name, at, temp = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if not at:
        return spec, None
    try:
        t = float(temp)
    except ValueError:
        raise ValueError(f"player {spec!r}: the temperature after '@' must be a number; got {temp!r}") from None
    if not (t > 0 and math.isfinite(t)) or not name:
        raise ValueError(f"player {spec!r}: expected 'checkpoint@T' with a temperature T > 0")
    return name, t


def player_replies(spec: str, problems: list[world.Problem], seed: int = 0, max_new_tokens: int = 48,
                   loaded: dict | None = None) -> list[str]:
    """The replies of player ``spec`` (:func:`parse_player`) to ``problems``; ``loaded`` caches models by name."""
    name, temperature = parse_player(spec)
    cache = {} if loaded is None else loaded
    if name not in cache:
        cache[name] = load_model(name)
    model, tok = cache[name]
    ev = evaluate_chat(model, tok, problems, greedy=temperature is None, temperature=temperature or 1.0,
                       max_new_tokens=max_new_tokens, seed=seed)
    return [r for _, r, _ in ev.rows]


def restyle(problems: list[world.Problem], replies: list[str], opener: str | None = None,
            fillers: int | list[int] = 0) -> list[str]:
    """The same replies with a polite ``opener`` in front and filler sentences after (``world.judge.FILLERS``,
    in turn): a player that differs from another only in style and length. ``fillers``: how many, one count for
    every reply or a list with one count per reply."""
    counts = [fillers] * len(replies) if isinstance(fillers, int) else list(fillers)
    if len(counts) != len(replies) or any(not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError(f"fillers must be an int >= 0 or a list of {len(replies)} of them; got {fillers!r}")
    out = []
    for _, r, f in zip(problems, replies, counts, strict=True):
        parts = ([opener] if opener else []) + [r.strip()] + [FILLERS[i % len(FILLERS)] for i in range(f)]
        out.append(" ".join(p for p in parts if p))
    return out


def _check_players(problems, players: dict[str, list[str]]) -> list[str]:
    if not problems:
        raise ValueError("problems is empty: an evaluation needs at least one prompt")
    if not isinstance(players, dict) or not players:
        raise ValueError("players must be a non-empty dict {name: [reply per problem]}")
    for name, replies in players.items():
        if len(replies) != len(problems):
            raise ValueError(f"players[{name!r}] has {len(replies)} replies; expected one per problem "
                             f"({len(problems)})")
    return list(players)


def _gold(problems, replies, spec=None) -> np.ndarray:
    return np.array([world.gold_score(p, r, allow_empty=True, spec=spec) for p, r in zip(problems, replies)])


def _words(replies) -> np.ndarray:
    return np.array([len(r.split()) for r in replies], dtype=np.float64)


# --- the report card ----------------------------------------------------------------------------------------


def report_card(problems: list[world.Problem], players: dict[str, list[str]], baseline: str | None = None,
                n_resamples: int = 1000, effect: float = 0.02, seed: int = 0, spec=None) -> dict:
    """Per player: gold with a bootstrap 95 % interval, overall and per family; accuracy and centred accuracy per
    family; the paired gold difference to ``baseline`` (default: the first player) with its interval, and the
    prompts a paired test would need to detect a gain of ``effect`` at that per-prompt spread. ``spec``: the
    model spec gold reads (``world.load_spec``; ``None``: the world as built)."""
    names = _check_players(problems, players)
    base = names[0] if baseline is None else baseline
    if base not in players:
        raise ValueError(f"baseline {base!r} is not one of the players {names}")
    families = list(dict.fromkeys(p.family for p in problems))
    gold = {n: _gold(problems, players[n], spec) for n in names}
    card: dict = {"baseline": base, "n_prompts": len(problems), "players": {}}
    for n in names:
        correct = np.array([world.is_correct(p, r) for p, r in zip(problems, players[n])], dtype=np.float64)
        mean, lo, hi = bootstrap_ci(gold[n], n_resamples, seed=seed)
        row = {"gold": mean, "gold_lo": lo, "gold_hi": hi, "accuracy": float(correct.mean()),
               "words": float(_words(players[n]).mean()), "families": {}}
        for fam in families:
            idx = np.array([p.family == fam for p in problems])
            m, flo, fhi = bootstrap_ci(gold[n][idx], n_resamples, seed=seed)
            acc = float(correct[idx].mean())
            row["families"][fam] = {"gold": m, "gold_lo": flo, "gold_hi": fhi, "accuracy": acc,
                                    "centred_accuracy": centred_accuracy(acc, CHANCE[fam])}
        row["centred_accuracy"] = float(np.mean([f["centred_accuracy"] for f in row["families"].values()]))
        if n != base:
            diff = paired_difference(gold[n], gold[base], n_resamples, seed=seed)
            row["vs_baseline"] = {**diff, "prompts_for_effect": prompts_needed(diff["sd"], effect)
                                  if diff["sd"] > 0 else 1}
        card["players"][n] = row
    return card


def sampling_spread(model, tokenizer, problems: list[world.Problem], seeds=(0, 1, 2), temperature: float = 1.0,
                    max_new_tokens: int = 48) -> dict:
    """Mean gold of one checkpoint sampled at ``temperature`` with each seed: the run-to-run noise a single
    evaluation hides. Returns ``{"per_seed", "mean", "sd"}``."""
    if not seeds:
        raise ValueError("seeds is empty")
    golds = [evaluate_chat(model, tokenizer, problems, greedy=False, temperature=temperature, seed=s,
                           max_new_tokens=max_new_tokens).overall["gold_score"] for s in seeds]
    return {"per_seed": golds, "mean": float(np.mean(golds)),
            "sd": float(np.std(golds, ddof=1)) if len(golds) > 1 else 0.0}


# --- judges and battles -------------------------------------------------------------------------------------


def annotator_judge(annotator: world.Annotator, problems, players: dict[str, list[str]]):
    """A judge that labels like ``annotator`` (Bradley-Terry on its taste, with its noise τ).

    A judge is ``judge(k, first, second, rng) → 1.0 | 0.5 | 0.0``: does the first-shown player's reply to
    problem ``k`` win?"""
    utility = {n: np.array([annotator.utility(p, r) if r.strip() else world.EMPTY_RESPONSE_SCORE
                            for p, r in zip(problems, rs)]) for n, rs in players.items()}

    def judge(k: int, first: str, second: str, rng: random.Random) -> float:
        d = (utility[first][k] - utility[second][k]) / annotator.tau
        return float(rng.random() < 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, d)))))

    return judge


def score_judge(scores: dict[str, np.ndarray]):
    """A judge that picks the reply with the higher score (a reward model's: pointwise, so order-blind)."""

    def judge(k: int, first: str, second: str, rng: random.Random) -> float:
        a, b = scores[first][k], scores[second][k]
        return 0.5 if a == b else float(a > b)

    return judge


def position_biased(judge, bias: float):
    """``judge``, except that with probability ``bias`` it skips reading and picks the first-shown reply: the
    position bias measured in LLM judges (Zheng et al. 2023), here of a known size to see what it does."""
    if not (0.0 <= bias <= 1.0):
        raise ValueError(f"bias must be in [0, 1]; got {bias!r}")

    def biased(k: int, first: str, second: str, rng: random.Random) -> float:
        return 1.0 if rng.random() < bias else judge(k, first, second, rng)

    return biased


def rm_scores(rm, tokenizer, problems, players: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The reward model's score of every player's reply to every problem (empty replies score as ``"."``)."""
    prompts = [p.prompt for p in problems]
    return {n: score_replies(rm, tokenizer, prompts, [r if r.strip() else "." for r in rs]).numpy().astype(float)
            for n, rs in players.items()}


def run_battles(problems, players: dict[str, list[str]], judge, n_battles: int = 1000, seed: int = 0,
                both_orders: bool = False) -> list[dict]:
    """``n_battles`` battles: a random problem, a random ordered pair of different players, the judge's verdict.

    Identical replies are a tie whatever the judge says. ``both_orders`` also asks the swapped order
    (``verdict_swapped``). Returns rows ``{"k", "first", "second", "verdict"[, "verdict_swapped"]}``."""
    names = _check_players(problems, players)
    if len(names) < 2:
        raise ValueError(f"an arena needs at least two players; got {names}")
    check_int("n_battles", n_battles, minimum=1)
    rng = random.Random(seed)
    rows = []
    for _ in range(n_battles):
        k = rng.randrange(len(problems))
        first, second = rng.sample(names, 2)
        same = players[first][k].strip() == players[second][k].strip()
        row = {"k": k, "first": first, "second": second, "verdict": 0.5 if same else judge(k, first, second, rng)}
        if both_orders:
            row["verdict_swapped"] = 0.5 if same else judge(k, second, first, rng)
        rows.append(row)
    return rows


def _comparisons(rows, names):
    index = {n: i for i, n in enumerate(names)}
    comps = [(index[r["first"]], index[r["second"]]) if r["verdict"] >= 0.5 else
             (index[r["second"]], index[r["first"]]) for r in rows]
    return np.array(comps, dtype=np.int64), np.array([r["verdict"] == 0.5 for r in rows])


def arena(problems, players: dict[str, list[str]], judges: dict, n_battles: int = 1000, n_resamples: int = 1000,
          seed: int = 0, spec=None) -> dict:
    """Battles judged by each judge in ``judges`` ({name: judge}), Elo with bootstrap intervals, and each
    judge's ranking against the true skill (mean gold): ``{"truth": {player: gold}, judge: {"elo", "lo", "hi",
    "tau_vs_truth"}}``."""
    names = _check_players(problems, players)
    truth = {n: float(_gold(problems, players[n], spec).mean()) for n in names}
    out: dict = {"truth": truth, "judges": {}}
    for jname, judge in judges.items():
        rows = run_battles(problems, players, judge, n_battles, seed)
        comps, ties = _comparisons(rows, names)
        fit = arena_elo(comps, len(names), ties, n_resamples=n_resamples, seed=seed)
        out["judges"][jname] = {
            "elo": dict(zip(names, fit["elo"].tolist())), "lo": dict(zip(names, fit["lo"].tolist())),
            "hi": dict(zip(names, fit["hi"].tolist())),
            "tau_vs_truth": kendall_tau(fit["elo"], [truth[n] for n in names]), "battles": len(rows)}
    return out


# --- judge traps --------------------------------------------------------------------------------------------


def judge_traps(problems, players: dict[str, list[str]], judge, n_battles: int = 1000, seed: int = 0,
                spec=None) -> dict:
    """A judge's biases, measured against the truth on the same battles, each asked in both orders.

    - ``position``: :func:`~rlhfbook_lab.equations.evaluation_stats.swap_consistency` (consistency, first_rate);
    - ``verbosity``: among battles whose replies differ in length, how often the judge's pick is the longer reply
      (``judge_picks_longer``) and how often the gold judge's is (``gold_picks_longer``, noise-free).
    """
    rows = run_battles(problems, players, judge, n_battles, seed, both_orders=True)
    decided = [r for r in rows if players[r["first"]][r["k"]].strip() != players[r["second"]][r["k"]].strip()]
    if not decided:
        raise ValueError("every battle had identical replies; the players do not differ")
    position = swap_consistency([r["verdict"] for r in decided], [r["verdict_swapped"] for r in decided])
    gold = {n: _gold(problems, rs, spec) for n, rs in players.items()}
    words = {n: _words(rs) for n, rs in players.items()}
    judge_longer, gold_longer = [], []
    for r in decided:
        k, a, b = r["k"], r["first"], r["second"]
        if words[a][k] == words[b][k] or gold[a][k] == gold[b][k] or r["verdict"] == 0.5:
            continue
        a_longer = words[a][k] > words[b][k]
        judge_longer.append(float((r["verdict"] == 1.0) == a_longer))
        gold_longer.append(float((gold[a][k] > gold[b][k]) == a_longer))
    return {"position": position, "battles": len(decided),
            "verbosity": {"judge_picks_longer": float(np.mean(judge_longer)) if judge_longer else float("nan"),
                          "gold_picks_longer": float(np.mean(gold_longer)) if gold_longer else float("nan"),
                          "battles": len(judge_longer)}}


def lc_vs_raw(problems, players: dict[str, list[str]], judge, baseline: str, seed: int = 0) -> dict:
    """Every other player against ``baseline`` on every problem, judged by ``judge``: raw and length-controlled
    win rates (``evaluation_stats.length_controlled_win_rate``, lengths in words), the gold win rate (noise-free,
    ties half), and Kendall's τ of the raw and the LC ranking against the ranking by mean gold."""
    names = [n for n in _check_players(problems, players) if n != baseline]
    if baseline not in players or len(names) < 2:
        raise ValueError(f"baseline must be one of the players and at least two others must be given; got "
                         f"baseline {baseline!r}, players {list(players)}")
    rng = random.Random(seed)
    words = {n: _words(rs) for n, rs in players.items()}
    gold = {n: _gold(problems, rs) for n, rs in players.items()}
    prefs, model, dl = [], [], []
    for i, n in enumerate(names):
        for k in range(len(problems)):
            same = players[n][k].strip() == players[baseline][k].strip()
            if rng.random() < 0.5:  # a random order, as AlpacaEval shows the pair
                v = 0.5 if same else judge(k, n, baseline, rng)
            else:
                v = 0.5 if same else 1.0 - judge(k, baseline, n, rng)
            prefs.append(v)
            model.append(i)
            dl.append(words[n][k] - words[baseline][k])
    fit = length_controlled_win_rate(np.array(prefs), np.array(model), np.array(dl), len(names))
    truth = [float(gold[n].mean()) for n in names]
    gold_win = [float(np.mean((gold[n] > gold[baseline]) + 0.5 * (gold[n] == gold[baseline]))) for n in names]
    return {"players": names, "baseline": baseline, "raw": dict(zip(names, fit["raw_win_rate"].tolist())),
            "lc": dict(zip(names, fit["lc_win_rate"].tolist())), "gold_win": dict(zip(names, gold_win)),
            "gold": dict(zip(names, truth)), "length_slope": dict(zip(names, fit["length_slope"].tolist())),
            "tau_raw": kendall_tau(fit["raw_win_rate"], truth), "tau_lc": kendall_tau(fit["lc_win_rate"], truth)}


def reply_logprobs(model, tokenizer, problems, replies: list[str], batch_size: int = 128) -> np.ndarray:
    """Mean per-token log-probability of each reply under ``model`` (its end-of-turn token included; an empty
    reply is read as ``"."``): how *familiar* the reply is to that model. Shape (N,)."""
    if len(problems) != len(replies) or not replies:
        raise ValueError(f"need one reply per problem, at least one; got {len(replies)} for {len(problems)}")
    rows = [tokenize_conversation(tokenizer, conversation(p.prompt, r if r.strip() else ".")) for p, r in
            zip(problems, replies)]
    out = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(rows), batch_size):
            b = collate_sft(rows[i:i + batch_size], tokenizer.pad_token_id)
            logps, _ = sequence_logps(model, b["input_ids"], b["attention_mask"], b["completion_mask"].float(),
                                      reduction="mean")
            out.append(logps.numpy())
    return np.concatenate(out).astype(np.float64)


def self_preference(judge_scores, gold, familiarity: dict[str, np.ndarray]) -> dict[str, float]:
    """Does a judge favour what its own backbone finds likely, beyond the truth? The least-squares fit

    .. math::  s_i = a + b\\,g_i + c_m\\,z_m(\\ell_i) \\qquad (\\text{one fit per backbone } m)

    of the judge's score s on the gold score g and the standardised familiarity z(ℓ) (:func:`reply_logprobs`
    under model m). ``c_m`` is the judge's score per standard deviation of m's familiarity at equal gold: a judge
    whose backbone is m and which prefers its own kind of text has c_m > 0, and above the c of a backbone it
    does not share (the self-preference of LLM judges, which Wataoka et al. 2024 tie to low perplexity).
    All arrays shape (N,); returns ``{m: c_m}``."""
    s, g = np.asarray(judge_scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if s.shape != g.shape or s.ndim != 1 or len(s) < 3:
        raise ValueError(f"judge_scores and gold must be 1-D of one length >= 3; got {s.shape} and {g.shape}")
    out = {}
    for m, lp in familiarity.items():
        lp = np.asarray(lp, dtype=np.float64)
        if lp.shape != s.shape or not np.isfinite(lp).all() or lp.std() == 0:
            raise ValueError(f"familiarity[{m!r}] must be {s.shape} finite values that vary")
        X = np.c_[np.ones_like(g), g, (lp - lp.mean()) / lp.std()]
        out[m] = float(np.linalg.lstsq(X, s, rcond=None)[0][2])
    return out


# --- contamination ------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9']+")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = _WORD.findall(text.lower())
    return {tuple(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def ngram_overlap(train_texts: list[str], eval_texts: list[str], n: int = 8) -> dict:
    """Contamination check: which evaluation items share a word ``n``-gram with the training data.

    An item shorter than ``n`` words counts as one n-gram (itself). On the world's texts (prompt + reference, about
    ten words) n = 8 finds no overlap between the shipped SFT data and the held-out prompts, while shorter n-grams
    match the shared templates ("write a negative review of"): too short an n flags clean data, too long an n
    misses paraphrases. Returns ``{"share", "flags"}``: the share of flagged items and one bool per item."""
    check_int("n", n, minimum=1)
    if not eval_texts:
        raise ValueError("eval_texts is empty")
    seen: set = set()
    for t in train_texts:
        seen |= _ngrams(t, n)
    flags = [bool(_ngrams(t, n) & seen) for t in eval_texts]
    return {"share": sum(flags) / len(flags), "flags": flags}


# --- the front door: rlhfbook-lab eval ----------------------------------------------------------------------


def evaluate_players(specs: list[str], n_prompts: int = 200, n_battles: int = 1000, n_resamples: int = 1000,
                     judge_model: str = "rm-tiny", seed: int = 0, log=print, spec="default") -> dict:
    """Report card, arena (gold annotator and the reward-model judge) and the judge's traps for checkpoints
    ``specs`` (:func:`parse_player`) on ``n_prompts`` held-out prompts, the truth and the gold annotator read
    from the model spec ``spec`` (a shipped name or a JSON file, ``world.load_spec``; checked first)."""
    model_spec = world.load_spec(spec)
    if len(specs) < 2 or len(set(specs)) != len(specs):
        raise ValueError(f"models must name at least two different players; got {specs}")
    check_int("n_prompts", n_prompts, minimum=4)
    loaded = {name: load_model(name) for name in dict.fromkeys(parse_player(s)[0] for s in specs)}  # fail early
    rm, rm_tok = load_reward_model(judge_model)
    torch.manual_seed(seed)
    problems = world.heldout_prompts(n_prompts, seed=seed)
    players = {}
    for spec in specs:
        log(f"answering {n_prompts} held-out prompts: {spec}")
        players[spec] = player_replies(spec, problems, seed=seed, loaded=loaded)
    ai = score_judge(rm_scores(rm, rm_tok, problems, players))
    gold = annotator_judge(world.spec_annotators(model_spec)["gold"], problems, players)
    results = {"models": specs, "n_prompts": n_prompts, "seed": seed, "judge_model": judge_model,
               "spec": model_spec.name,
               "report_card": report_card(problems, players, n_resamples=n_resamples, seed=seed, spec=model_spec),
               "arena": arena(problems, players, {"gold annotator": gold, f"AI judge ({judge_model})": ai},
                              n_battles, n_resamples, seed, spec=model_spec),
               "judge_traps": {"gold annotator": judge_traps(problems, players, gold, n_battles, seed, model_spec),
                               f"AI judge ({judge_model})": judge_traps(problems, players, ai, n_battles, seed,
                                                                        model_spec)}}
    return results


def _card_markdown(results: dict) -> str:
    card = results["report_card"]
    fams = list(next(iter(card["players"].values()))["families"])
    lines = ["# Report card", "", f"{card['n_prompts']} held-out prompts, seed {results['seed']}, model spec "
             f"{results.get('spec', 'default')!r}; gold score "
             "with bootstrap 95 % intervals over prompts; accuracy centred as (acc − chance)/(1 − chance); paired "
             f"gold difference to {card['baseline']} with its interval, and the prompts a paired test needs to "
             "detect a 0.02 gain.", "",
             "| player | gold [95 % CI] | " + " | ".join(f"{f} gold / centred acc" for f in fams)
             + " | words | Δ gold vs baseline [95 % CI] | prompts for 0.02 |",
             "|---" * (len(fams) + 5) + "|"]
    for n, row in card["players"].items():
        fam = " | ".join(f"{row['families'][f]['gold']:+.2f} / {row['families'][f]['centred_accuracy']:.2f}"
                         for f in fams)
        vs = row.get("vs_baseline")
        diff = f"{vs['diff']:+.3f} [{vs['lo']:+.3f}, {vs['hi']:+.3f}]" if vs else "(baseline)"
        need = f"{vs['prompts_for_effect']:,}" if vs else "—"
        lines.append(f"| {n} | {row['gold']:+.3f} [{row['gold_lo']:+.3f}, {row['gold_hi']:+.3f}] | {fam} | "
                     f"{row['words']:.1f} | {diff} | {need} |")
    return "\n".join(lines) + "\n"


def _arena_markdown(results: dict) -> str:
    ar = results["arena"]
    judges = list(ar["judges"])
    lines = ["# Arena", "", "Bradley-Terry Elo of random battles (ties half a win), 95 % intervals from "
             "bootstrap resamples of the battles; true skill = mean gold score.", "",
             "| player | true skill (gold) | " + " | ".join(f"Elo: {j}" for j in judges) + " |",
             "|---" * (len(judges) + 2) + "|"]
    for n in sorted(ar["truth"], key=lambda n: -ar["truth"][n]):
        cells = [f"{ar['judges'][j]['elo'][n]:.0f} [{ar['judges'][j]['lo'][n]:.0f}, {ar['judges'][j]['hi'][n]:.0f}]"
                 for j in judges]
        lines.append(f"| {n} | {ar['truth'][n]:+.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Kendall's τ of each judge's ranking against the true skill: "
              + ", ".join(f"{j} {ar['judges'][j]['tau_vs_truth']:+.2f}" for j in judges) + ".", "",
              "| judge | swap consistency | first slot wins | picks the longer reply | gold picks the longer |",
              "|---|---|---|---|---|"]
    for j, t in results["judge_traps"].items():
        lines.append(f"| {j} | {t['position']['consistency']:.2f} | {t['position']['first_rate']:.2f} | "
                     f"{t['verbosity']['judge_picks_longer']:.2f} | {t['verbosity']['gold_picks_longer']:.2f} |")
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``report.md``, ``report.json``, ``report.png`` and ``arena.md`` into ``out``, all at once: they are
    written to a temporary folder beside it and renamed into place, so an error leaves nothing half-written."""
    import matplotlib  # deferred: only a report with a figure needs it

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # deferred: after the backend is chosen

    out = check_output_folder(out, overwrite)
    with atomic_folder(out) as tmp:
        (tmp / "report.json").write_text(json.dumps(results, indent=2))
        (tmp / "report.md").write_text(_card_markdown(results))
        (tmp / "arena.md").write_text(_arena_markdown(results))
        card, ar = results["report_card"]["players"], results["arena"]
        names = list(card)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        ax = axes[0]
        g = np.array([card[n]["gold"] for n in names])
        err = np.array([[card[n]["gold"] - card[n]["gold_lo"], card[n]["gold_hi"] - card[n]["gold"]]
                        for n in names]).T
        ax.bar(names, g, yerr=err, capsize=4, color="#4C72B0")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("gold score (held-out), 95 % CI")
        ax.set_title("report card: gold score per player")
        ax.tick_params(axis="x", rotation=20)
        ax = axes[1]
        for j, res in ar["judges"].items():
            ax.scatter([ar["truth"][n] for n in names], [res["elo"][n] for n in names], label=j)
        ax.set_xlabel("true skill (mean gold score)")
        ax.set_ylabel("arena Elo")
        ax.set_title("arena ratings against the truth")
        ax.legend()
        fig.tight_layout()
        fig.savefig(tmp / "report.png", dpi=110)
        plt.close(fig)
    return out
