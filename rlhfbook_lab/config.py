"""One shape for every configuration, and one way to change it.

Every algorithm has a dataclass (``SFTConfig``, ``DPOConfig``, ``RLConfig``, ...) with a docstring under each
field; the settings of the shared training loop nest inside it as ``train: TrainConfig``. A *recipe* is a named set
of overrides on the dataclass's defaults, kept in a module-level dict beside the class; nothing else writes a
default. This module is the one path from "the defaults" to "the run":

- :func:`override` applies overrides by dotted name (``{"train.lr": 3e-4}``) or by a field name that is unique in the
  tree (``{"lr": 3e-4}`` finds ``train.lr``), returning a new config (validated again by its ``__post_init__``);
  strings are parsed by the field's type, so ``"train.lr=3e-4"`` from a command line works the same;
- :func:`build` = the class's defaults, then a named recipe, then the caller's overrides;
- :func:`add_config_arguments` / :func:`overrides_from_args` turn the fields into command-line flags
  (``--train.lr 3e-4``, ``--kl-estimator k2``), each field's docstring as its ``--help``.

An unknown name, a name that matches two fields, or a value of the wrong type is a ``ValueError`` naming it and what
was expected. Pure Python (floor 0): it reads the classes, it never imports them.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from functools import lru_cache
from typing import Any, Mapping

__all__ = ["add_config_arguments", "build", "field_docs", "fields_of", "override", "overrides_from_args",
           "parse_value", "to_dict"]

_NONE = ("none", "null")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (PEP 257's attribute docstrings), by field name,
    whitespace collapsed. Fields without one map to ``""``."""
    docs = {f.name: "" for f in dataclasses.fields(cls)}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (a class made at run time)
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields_of(cfg_or_cls, prefix: str = "") -> dict[str, tuple[Any, Any, str]]:
    """Every leaf field of a (nested) config by dotted name: ``{"train.lr": (type, default or value, doc)}``."""
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    hints, docs, out = _hints(cls), field_docs(cls), {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind = hints[f.name]
        if isinstance(cfg_or_cls, type):
            value = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        else:
            value = getattr(cfg_or_cls, f.name)
        if dataclasses.is_dataclass(kind):
            out.update(fields_of(value if value is not None else kind, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (kind, value, docs.get(f.name, ""))
    return out


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def parse_value(text: str, kind, name: str = "value"):
    """Parse the command-line string ``text`` as the annotated type ``kind`` (int, float, bool, str, a
    ``X | None``, a ``tuple[...]`` written comma-separated, a ``Literal``). ``ValueError`` naming ``name``
    otherwise."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(text, arg, name)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(f"{name} must be {' or '.join(_type_name(a) for a in args)}; got {text!r}")
    if origin is tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(t, args[0], name) for t in items)
        if len(items) != len(args):
            raise ValueError(f"{name} must be {len(args)} comma-separated values; got {text!r}")
        return tuple(parse_value(t, a, name) for t, a in zip(items, args))
    if origin is typing.Literal:
        if text not in [str(a) for a in args]:
            raise ValueError(f"{name} must be one of {args}; got {text!r}")
        return next(a for a in args if str(a) == text)
    if kind is bool:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(f"{name} must be true or false; got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name} must be {'an int' if kind is int else 'a number'}; got {text!r}") from None
    if kind is str:
        return text
    raise ValueError(f"{name}: cannot read a {_type_name(kind)} from the command line")


def _resolve(name: str, leaves: Mapping[str, Any]) -> str:
    """A dotted name, or a field name unique among the leaves (``lr`` → ``train.lr``)."""
    if name in leaves:
        return name
    matches = [k for k in leaves if k.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"{name!r} is ambiguous: say which of {sorted(matches)}")
    raise ValueError(f"unknown setting {name!r}; the settings are: {', '.join(sorted(leaves))}")


def override(cfg, overrides: Mapping[str, Any] | None = None, **kwargs):
    """A new config: ``cfg`` with ``overrides`` (and ``kwargs``) applied, by dotted or unique field name.

    A string value for a non-string field is parsed by the field's type (command lines); other values are used as
    given and checked by the class's own ``__post_init__`` validation, which runs again on every rebuilt level."""
    changes = {**(overrides or {}), **kwargs}
    if not changes:
        return cfg
    leaves = fields_of(cfg)
    nested: dict[str, Any] = {}
    for name, value in changes.items():
        key = _resolve(name, leaves)
        kind = leaves[key][0]
        if isinstance(value, str) and kind is not str:
            value = parse_value(value, kind, key)
        nested[key] = value
    return _rebuild(cfg, nested)


def _rebuild(cfg, changes: Mapping[str, Any]):
    own, inner = {}, {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            inner.setdefault(head, {})[rest] = value
        else:
            own[head] = value
    for head, sub in inner.items():
        own[head] = _rebuild(getattr(cfg, head), sub)
    return dataclasses.replace(cfg, **own)


def build(cls: type, recipes: Mapping[str, Mapping[str, Any]] | None = None, name: str | None = None,
          *more: Mapping[str, Any] | None, **overrides):
    """``cls()``'s defaults, then ``recipes[name]`` (a dict of overrides), then each mapping in ``more`` (e.g. a fast
    mode's changes), then ``overrides``. ``ValueError`` for a recipe name that does not exist."""
    cfg = cls()
    if name is not None:
        if recipes is None or name not in recipes:
            raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(recipes or {})}")
        cfg = override(cfg, recipes[name])
    for extra in more:
        cfg = override(cfg, extra or {})
    return override(cfg, overrides)


def to_dict(cfg) -> dict:
    """The config as a plain nested dict (for ``training_meta.json``)."""
    return dataclasses.asdict(cfg)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls_or_cfg, title: str | None = None,
                         skip: tuple[str, ...] = ()) -> None:
    """One flag per leaf field (``--train.lr``, ``--kl-estimator``), its help the field's docstring and its
    default shown from ``cls_or_cfg``; a flag not given leaves the recipe's value. Values are parsed by
    :func:`overrides_from_args` (so a bad value is a one-line error naming the flag)."""
    group = parser.add_argument_group(title or "settings (each overrides the recipe)")
    leaves = fields_of(cls_or_cfg)
    taken = {s for a in parser._actions for s in a.option_strings}  # the command's own flags keep their names
    for key, (kind, value, doc) in leaves.items():
        if key in skip:
            continue
        leaf = key.rsplit(".", 1)[-1]
        flags = [_flag(key)]
        if leaf != key and _flag(leaf) not in taken and sum(k.rsplit(".", 1)[-1] == leaf for k in leaves) == 1:
            flags.append(_flag(leaf))  # --lr for --train.lr when the name is unique
        flags = [f for f in flags if f not in taken]
        if not flags:
            continue
        taken.update(flags)
        shown = "none" if value is None else (",".join(map(str, value)) if isinstance(value, tuple) else value)
        help_text = f"{doc} [{_type_name(kind)}; default: {shown}]".replace("%", "%%")
        is_bool = kind is bool or (typing.get_origin(kind) in (typing.Union, types.UnionType)
                                    and bool in typing.get_args(kind))
        extra = dict(nargs="?", const="true") if is_bool else {}  # `--flag` alone means true
        group.add_argument(*flags, dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar=_type_name(kind).upper()
                           if kind in (int, float, str) else "VALUE", help=help_text, **extra)


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The config flags given on the command line, as ``{dotted name: string}`` for :func:`override`."""
    return {k[len("cfg:"):]: v for k, v in vars(args).items() if k.startswith("cfg:")}
