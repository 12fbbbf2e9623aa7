"""Simulated annotators: turn scores into preference labels by the Bradley-Terry model with noise.

An annotator has a taste table (weights over the judge's features, see ``world.judge``) and a temperature τ.
Its utility for a reply is u = Σ_f w_f · feature_f, and it prefers ``a`` to ``b`` with

.. math::  P(a \\succ b) = \\sigma\\big((u(a) - u(b)) / \\tau\\big)

(Bradley-Terry with strengths exp(u/τ)). With ``tie_strength`` ν > 0 it can also call a tie, by Davidson's
(1970) extension: P(a≻b) ∝ π_a, P(b≻a) ∝ π_b, P(tie) ∝ ν·sqrt(π_a π_b), π = exp(u/τ); ν = 0 is plain
Bradley-Terry, and *given* no tie, P(a≻b) is still σ((u(a) − u(b))/τ).

Because the labelling model is known, so is the best accuracy any reward model can reach on its labels (the
*Bayes ceiling*): E[max(p, 1 − p)] with p = P(a≻b).

:data:`ANNOTATORS` holds the default crowd, read from the shipped spec (``data/spec/default.json``,
``world.spec``): ``gold`` (the world's own taste) and three people who weigh the same features differently.
:func:`spec_annotators` builds the crowd of any other spec, so labels drawn under a changed spec follow it.
Their majority vote can be intransitive (ch 10), and their disagreement says which pairs are matters of taste.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .judge import DEFAULT_SPEC, FEATURES, GOLD_WEIGHTS, gold_score
from .spec import Spec, load_spec


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class Annotator:
    """A simulated person: a taste table, a temperature and a tendency to call ties."""

    name: str
    weights: dict[str, float] = field(default_factory=lambda: dict(GOLD_WEIGHTS))
    """Weights over the judge's features (``world.judge.FEATURES``); the gold table by default."""
    tau: float = 0.1
    """Bradley-Terry temperature: smaller is a more decisive (less noisy) annotator. Must be > 0."""
    tie_strength: float = 0.0
    """Davidson's ν ≥ 0: 0 never ties; 1 ties about a third of the time on equal replies."""

    def __post_init__(self):
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"Annotator {self.name!r}: weights has unknown feature(s) {sorted(unknown)}; "
                             f"features are {FEATURES}")
        if not self.tau > 0:
            raise ValueError(f"Annotator {self.name!r}: tau must be > 0; got {self.tau}")
        if not self.tie_strength >= 0:  # also rejects NaN
            raise ValueError(f"Annotator {self.name!r}: tie_strength must be >= 0; got {self.tie_strength}")

    def utility(self, prompt, response: str) -> float:
        """u(response) under this annotator's taste."""
        return gold_score(prompt, response, weights=self.weights)

    def probabilities(self, prompt, a: str, b: str) -> tuple[float, float, float]:
        """(P(a≻b), P(b≻a), P(tie)) under the Davidson / Bradley-Terry model."""
        d = (self.utility(prompt, a) - self.utility(prompt, b)) / self.tau
        if self.tie_strength == 0:
            p = _sigmoid(d)
            return p, 1.0 - p, 0.0
        # divide every term by sqrt(pi_a pi_b): pi_a -> exp(d/2), pi_b -> exp(-d/2), tie -> nu
        ea, eb = math.exp(min(d / 2, 300)), math.exp(min(-d / 2, 300))
        z = ea + eb + self.tie_strength
        return ea / z, eb / z, self.tie_strength / z

    def label(self, prompt, a: str, b: str, rng: random.Random) -> str:
        """Draw a label: ``"a"``, ``"b"`` or ``"tie"``."""
        pa, pb, _ = self.probabilities(prompt, a, b)
        x = rng.random()
        return "a" if x < pa else ("b" if x < pa + pb else "tie")


def spec_annotators(spec: Spec | str = "default") -> dict[str, Annotator]:
    """The crowd of a model spec (``world.load_spec``): ``gold`` with the spec's own weights (τ = 0.1, no ties),
    then each of the spec's ``annotators`` with its weights, τ and tie strength."""
    spec = load_spec(spec)
    crowd = {"gold": Annotator("gold", dict(spec.weights))}
    for name, a in spec.annotators.items():
        crowd[name] = Annotator(name, dict(a["weights"]), tau=a["tau"], tie_strength=a["tie_strength"])
    return crowd


ANNOTATORS: dict[str, Annotator] = spec_annotators(DEFAULT_SPEC)
"""The shipped spec's crowd: ``gold``; ``stickler`` (cares about being right and finishing cleanly, indifferent to
politeness); ``friendly`` (loves warmth, even a lot of it; forgives a wrong answer more easily); ``terse`` (wants
the shortest reply; an opener is wasted words to them)."""


def bayes_ceiling_pair(annotator: Annotator, prompt, a: str, b: str) -> float:
    """max(p, 1 − p) for one pair, p = P(a≻b | no tie): the best any model can do on this pair's label."""
    pa, pb, _ = annotator.probabilities(prompt, a, b)
    p = pa / (pa + pb)
    return max(p, 1.0 - p)
