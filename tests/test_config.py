"""rlhfbook_lab.config: field docstrings, dotted and unique-name overrides, recipes, flags generated from fields."""

import argparse
import dataclasses

import pytest

from rlhfbook_lab.config import (
    add_config_arguments,
    build,
    field_docs,
    fields_of,
    override,
    overrides_from_args,
    parse_value,
)


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    """Peak learning rate."""
    steps: int = 10
    """Optimizer steps."""
    bf16: bool | None = None
    """Autocast."""


@dataclasses.dataclass
class Outer:
    name: str = "dpo"
    """Which loss."""
    beta: float = 0.1
    """KL strength, > 0."""
    families: tuple[str, ...] = ("addition", "reverse")
    """Task families."""
    margin: float | None = None
    """Optional margin."""
    train: Inner = dataclasses.field(default_factory=lambda: Inner(steps=20))
    """The loop."""

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0; got {self.beta}")


RECIPES = {"ipo": {"name": "ipo", "beta": 0.5}, "long": {"train.steps": 200}}


def test_field_docs_read_the_docstring_under_each_field():
    assert field_docs(Outer) == {"name": "Which loss.", "beta": "KL strength, > 0.", "families": "Task families.",
                                 "margin": "Optional margin.", "train": "The loop."}
    assert field_docs(Inner)["lr"] == "Peak learning rate."


def test_fields_of_flattens_nested_configs_with_their_values():
    leaves = fields_of(Outer())
    assert list(leaves) == ["name", "beta", "families", "margin", "train.lr", "train.steps", "train.bf16"]
    assert leaves["train.steps"][1] == 20  # the nested default_factory's value, not Inner's own default
    assert leaves["train.lr"][2] == "Peak learning rate."


def test_override_by_dotted_or_unique_name_returns_a_new_validated_config():
    base = Outer()
    cfg = override(base, {"train.lr": 3e-4}, steps=5, beta=0.2)
    assert (cfg.train.lr, cfg.train.steps, cfg.beta) == (3e-4, 5, 0.2)
    assert (base.train.lr, base.train.steps, base.beta) == (1e-3, 20, 0.1)  # untouched
    with pytest.raises(ValueError, match="beta must be > 0"):  # the class's own check runs again
        override(base, beta=0.0)


@pytest.mark.parametrize("name, match", [("lrr", "unknown setting 'lrr'"), ("train.nope", "unknown setting")])
def test_unknown_names_are_refused_with_the_list(name, match):
    with pytest.raises(ValueError, match=match) as e:
        override(Outer(), {name: 1})
    assert "train.lr" in str(e.value)


def test_an_ambiguous_short_name_is_refused():
    @dataclasses.dataclass
    class Two:
        a: Inner = dataclasses.field(default_factory=Inner)
        b: Inner = dataclasses.field(default_factory=Inner)

    with pytest.raises(ValueError, match="ambiguous"):
        override(Two(), lr=1.0)
    assert override(Two(), {"b.lr": 2.0}).b.lr == 2.0


@pytest.mark.parametrize("text, kind, value", [
    ("3e-4", float, 3e-4), ("12", int, 12), ("true", bool, True), ("off", bool, False), ("none", float | None, None),
    ("0.5", float | None, 0.5), ("addition, review", tuple[str, ...], ("addition", "review")),
    ("0.9,0.95", tuple[float, float], (0.9, 0.95)), ("grpo", str, "grpo"),
])
def test_parse_value_hand_cases(text, kind, value):
    assert parse_value(text, kind) == value


@pytest.mark.parametrize("text, kind", [("abc", float), ("1.5", int), ("maybe", bool), ("1,2,3", tuple[float, float])])
def test_parse_value_refuses_with_the_name(text, kind):
    with pytest.raises(ValueError, match="train.lr"):
        parse_value(text, kind, "train.lr")


def test_strings_are_parsed_by_the_field_type():
    cfg = override(Outer(), {"lr": "2e-4", "train.bf16": "false", "families": "review", "margin": "none"})
    assert cfg.train.lr == 2e-4 and cfg.train.bf16 is False and cfg.families == ("review",) and cfg.margin is None
    with pytest.raises(ValueError, match="train.steps must be an int"):
        override(Outer(), steps="ten")


def test_build_applies_defaults_then_recipe_then_overrides():
    assert build(Outer) == Outer()
    cfg = build(Outer, RECIPES, "ipo", RECIPES["long"], beta=0.7)
    assert (cfg.name, cfg.beta, cfg.train.steps) == ("ipo", 0.7, 200)
    with pytest.raises(ValueError, match="unknown recipe 'kto'"):
        build(Outer, RECIPES, "kto")


def test_flags_are_generated_from_the_fields_and_only_given_ones_override():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Outer())
    assert "Peak learning rate." in parser.format_help() and "--train.lr" in parser.format_help()
    args = parser.parse_args(["--train.lr", "5e-5", "--beta", "0.3"])
    assert overrides_from_args(args) == {"train.lr": "5e-5", "beta": "0.3"}
    cfg = override(build(Outer, RECIPES, "ipo"), overrides_from_args(args))
    assert (cfg.name, cfg.beta, cfg.train.lr, cfg.train.steps) == ("ipo", 0.3, 5e-5, 20)
