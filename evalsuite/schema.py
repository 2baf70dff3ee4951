"""Typed configuration keys: a dataclass field carries its help text (and, where the value is one of a few words, its
choices), and a value read from TOML or ``--set`` is checked against the field's type annotation.

The config loader (:mod:`evalsuite.config`) and the configuration reference (``docs/configuration.md``, rendered by
:func:`evalsuite.config.config_reference`) both read the fields from here, so a key added to a dataclass is checked
and documented without a list to keep in step.

Type rules, from the annotation: ``str``, ``bool``, ``int`` (a boolean is not a whole number), ``float`` (a whole
number is taken as a float), ``X | None`` (TOML has no null: None is only the default), ``list[X]``/``tuple[X, ...]``
(a TOML array), ``dict[str, X]`` (a TOML table) and ``Any``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar, Union

T = TypeVar("T")


def key(default: T, help: str, *, choices: Sequence[str] = ()) -> T:
    """A config key with a default, its one-line help and, optionally, the only values it takes."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices)})


def key_factory(factory: Callable[[], T], help: str) -> T:
    """A config key whose default is built per instance (a table or a list)."""
    return dataclasses.field(default_factory=factory, metadata={"help": help, "choices": ()})


@dataclass(frozen=True)
class KeySpec:
    """One key of a config table, as the checker and the reference see it."""

    name: str
    type: Any  # the resolved annotation
    default: Any  # dataclasses.MISSING when the key has no default
    help: str
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return type_name(self.type)


def keys_of(cls: type, *, exclude: Sequence[str] = ()) -> list[KeySpec]:
    """The keys of a config dataclass in declaration order, with resolved types and help (empty when undocumented)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(KeySpec(f.name, hints[f.name], default, str(f.metadata.get("help", "")),
                           tuple(f.metadata.get("choices", ()))))
    return out


class TypeMismatch(Exception):
    """A value is not of the type a key wants; the message is the wanted type in words."""


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def type_name(tp: Any) -> str:
    """The type in the words a TOML user reads: ``whole number``, ``string or none``, ``list of strings``."""
    if tp is Any:
        return "any value"
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(type_name(a) for a in args)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_plural(type_name(args[0]))}" if args else "list"
    if origin is dict or tp is dict:
        return "table"
    return {str: "string", bool: "boolean (true or false)", int: "whole number", float: "number"}.get(tp, str(tp))


def _plural(name: str) -> str:
    return {"boolean (true or false)": "booleans", "any value": "values"}.get(name, name + "s")


def check_value(value: Any, tp: Any) -> Any:
    """``value`` as the field of type ``tp`` holds it (an int becomes a float, an array a tuple where the type says so);
    :class:`TypeMismatch` when it is not of that type."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(value, arg)
            except TypeMismatch:
                continue
        raise TypeMismatch(type_name(tp))
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeMismatch(type_name(tp))
        item_types = [a for a in typing.get_args(tp) if a is not Ellipsis]
        try:
            items = [check_value(v, item_types[0]) if item_types else v for v in value]
        except TypeMismatch:
            raise TypeMismatch(type_name(tp)) from None
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeMismatch(type_name(tp))
        key_value_types = typing.get_args(tp)
        try:
            return {k: check_value(v, key_value_types[1]) if key_value_types else v for k, v in value.items()}
        except TypeMismatch:
            raise TypeMismatch(type_name(tp)) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeMismatch(type_name(tp))


def toml_value(value: Any) -> str:
    """A value as TOML writes it: ``"many"``, ``true``, ``[1, 2]``, ``{ a = 1 }``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if value is None:
        return "(none)"
    if hasattr(value, "isoformat"):  # TOML dates and times
        return str(value.isoformat())
    return repr(value)


__all__ = ["KeySpec", "TypeMismatch", "check_value", "key", "key_factory", "keys_of", "toml_value", "type_name"]
