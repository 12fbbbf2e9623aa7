"""The world's **model spec** (RLHF Book, ch. 17): the taste table as a file, ``data/spec/<name>.json``.

A spec says what "good" means in this world. The gold judge (``world.judge.gold_score``) scores a reply as
Σ_f w_f · feature_f with the spec's ``weights``, and the simulated annotators (``world.annotators``) are the
spec's crowd: ``gold`` has the spec's own weights, and each entry of ``annotators`` is a person who weighs the
same features differently. The shipped ``default.json`` *is* the world every checkpoint, data set and lesson was
built in; change one weight in a copy and the judge, the annotators and every label drawn by them follow.

The file (JSON)::

    {"name": "default",                       # a label for tables and reports
     "description": "...",                    # optional prose
     "weights": {"correct": 1.0, ...},        # one finite number per feature in FEATURES, no more, no fewer
     "notes": {"correct": "...", ...},        # optional: what each feature measures
     "annotators": {                          # optional: the crowd besides "gold"
        "terse": {"weights": {...},           #   complete, like the spec's own
                  "tau": 0.1,                 #   optional Bradley-Terry temperature (> 0; default 0.1)
                  "tie_strength": 0.0,        #   optional Davidson ν (>= 0; default 0)
                  "note": "..."}}}            #   optional prose

Every field is checked where the file enters (:func:`load_spec`, :func:`spec_from_dict`): an unknown or missing
feature, a non-numeric or infinite weight, an unknown key → ``ValueError`` naming the field
(``"spec 'x.json': weights.polite_opener must be a finite number; got 'high'"``). Pure Python, no model.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from rlhfbook_lab.checks import check_number
from rlhfbook_lab.paths import DATA_DIR

__all__ = ["FEATURES", "SPEC_DIR", "Spec", "load_spec", "spec_from_dict", "spec_names"]

FEATURES = ("correct", "polite_opener", "polite_excess", "extra_words", "unclean_end", "repetition")
"""The features the gold judge measures (``world.judge.taste_features``), in the judge's order."""

SPEC_DIR = DATA_DIR / "spec" if (DATA_DIR / "spec").is_dir() else Path(__file__).resolve().parents[2] / "data" / "spec"
"""Where the shipped specs live: ``default.json`` (the world as built) and changed copies (the repository's
``data/spec`` when an ``RLHFBOOK_DATA`` folder has none)."""

_TOP_KEYS = ("name", "description", "weights", "notes", "annotators")
_ANNOTATOR_KEYS = ("weights", "tau", "tie_strength", "note")


@dataclass(frozen=True)
class Spec:
    """A validated model spec (module docstring). Build one with :func:`load_spec` or :func:`spec_from_dict`;
    :meth:`replace` changes weights and returns a new spec."""

    name: str
    """A label for tables and reports (the file's ``name``)."""
    weights: Mapping[str, float]
    """The gold judge's weight per feature, every feature of :data:`FEATURES` in that order (read-only)."""
    annotators: Mapping[str, Mapping] = field(default_factory=dict)
    """The crowd besides ``gold``: name → ``{"weights", "tau", "tie_strength", "note"}`` (validated, complete)."""
    description: str = ""
    """Optional prose."""
    notes: Mapping[str, str] = field(default_factory=dict)
    """Optional: feature → what it measures."""

    def replace(self, name: str | None = None, **weights: float) -> Spec:
        """A copy with some of the gold weights changed (``spec.replace(polite_opener=-0.2)``), validated like a
        file; the annotators are kept. ``name`` defaults to the changes written out."""
        changed = ", ".join(f"{k}={v}" for k, v in weights.items())
        data = self.to_dict()
        data["weights"].update(weights)
        data["name"] = name if name is not None else f"{self.name} with {changed}"
        return spec_from_dict(data, where=f"{self.name}.replace")

    def to_dict(self) -> dict:
        """The spec as the plain dict a file holds (:func:`spec_from_dict` of it gives an equal spec)."""
        return {"name": self.name, "description": self.description, "weights": dict(self.weights),
                "notes": dict(self.notes),
                "annotators": {n: {k: (dict(v) if k == "weights" else v) for k, v in a.items()}
                               for n, a in self.annotators.items()}}

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON (a file :func:`load_spec` reads back as an equal spec)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _weights(raw, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object of feature -> number; got {type(raw).__name__}")
    unknown = [k for k in raw if k not in FEATURES]
    if unknown:
        raise ValueError(f"{where} has unknown feature(s) {unknown}; features are {FEATURES}")
    missing = [k for k in FEATURES if k not in raw]
    if missing:
        raise ValueError(f"{where} is missing the weight(s) of {missing}; a spec gives every feature of "
                         f"{FEATURES} a number (0.0 for indifference)")
    return {k: check_number(f"{where}.{k}", raw[k]) for k in FEATURES}


def _string(raw, where: str) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{where} must be a string; got {type(raw).__name__}")
    return raw


def _keys(raw, allowed, where: str) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object; got {type(raw).__name__}")
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; expected keys from {allowed}")


def spec_from_dict(data, where: str = "spec") -> Spec:
    """Validate a spec's plain dict (module docstring) and return the :class:`Spec`.

    Raises:
        ValueError: naming the field (``where`` prefixes it): not an object, unknown keys, a missing ``name`` or
            ``weights``, unknown or missing features, a weight that is not a finite number, an annotator called
            ``gold`` (that is the spec's own weights), a bad ``tau`` or ``tie_strength``.
    """
    _keys(data, _TOP_KEYS, where)
    for key in ("name", "weights"):
        if key not in data:
            raise ValueError(f"{where} has no {key!r}; a spec needs 'name' and 'weights'")
    name = _string(data["name"], f"{where}: name")
    weights = _weights(data["weights"], f"{where}: weights")
    notes = data.get("notes", {})
    _keys(notes, FEATURES, f"{where}: notes")
    notes = {k: _string(v, f"{where}: notes.{k}") for k, v in notes.items()}
    crowd = {}
    annotators = data.get("annotators", {})
    _keys(annotators, tuple(annotators), f"{where}: annotators")  # an object
    for who, raw in annotators.items():
        at = f"{where}: annotators.{who}"
        if who == "gold":
            raise ValueError(f"{at}: the name 'gold' is the spec's own weights; give this annotator another name")
        _keys(raw, _ANNOTATOR_KEYS, at)
        if "weights" not in raw:
            raise ValueError(f"{at} has no 'weights'")
        crowd[who] = MappingProxyType({
            "weights": MappingProxyType(_weights(raw["weights"], f"{at}.weights")),
            "tau": check_number(f"{at}.tau", raw.get("tau", 0.1), minimum=0, strict=True),
            "tie_strength": check_number(f"{at}.tie_strength", raw.get("tie_strength", 0.0), minimum=0),
            "note": _string(raw.get("note", ""), f"{at}.note")})
    return Spec(name=name, weights=MappingProxyType(weights), annotators=MappingProxyType(crowd),
                description=_string(data.get("description", ""), f"{where}: description"),
                notes=MappingProxyType(notes))


def spec_names() -> list[str]:
    """The shipped specs' names (the ``*.json`` files of :data:`SPEC_DIR`)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.json"))


def load_spec(spec: str | Path | Spec = "default") -> Spec:
    """Read and validate a spec: a :class:`Spec` (returned as is), a shipped name (``"default"``: the world as
    built; :func:`spec_names`) or a path to a JSON file.

    Raises:
        ValueError: an unknown name, a missing file, invalid JSON, or any field :func:`spec_from_dict` rejects.
    """
    if isinstance(spec, Spec):
        return spec
    if not isinstance(spec, (str, Path)):
        raise ValueError(f"spec must be a world.Spec, a shipped name or a path; got {type(spec).__name__}")
    path = Path(spec)
    if path.suffix != ".json":
        if str(spec) not in spec_names():
            raise ValueError(f"unknown spec {str(spec)!r}; expected a path to a .json file or one of "
                             f"{spec_names()}")
        path = SPEC_DIR / f"{spec}.json"
    if not path.is_file():
        raise ValueError(f"spec file {str(path)!r} does not exist")
    return _load_file(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_file(path: str, mtime_ns: int) -> Spec:
    """Read and validate one file, once per version of it (``gold_score(spec="name")`` in a loop stays cheap)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"spec {path.name!r} is not valid JSON: {e}") from e
    return spec_from_dict(data, where=f"spec {path.name!r}")
