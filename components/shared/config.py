"""Typed stage configuration.

Each stage declares a `StageConfig` subclass next to its function. Unknown keys and wrong types
are errors that name the key; a preset section travels into a KFP task as a plain dict parameter
and the stage rebuilds its typed config from it with `from_params`.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from components.shared.errors import UserError

INPUT_SHOWN = 80  # characters of a rejected value quoted in an error line (a value may be megabytes)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys refused, and no yes/no value where a number goes.

    pydantic's lax mode reads `true` as 1 for an int field, so `--set pretrain.max_steps=true`
    trained one step and registered the model. Its strict mode is not the answer: it also refuses
    the string "1e-3" (how PyYAML reads that float) and 50.0 for an int (how KFP hands every
    number back through JSON). So booleans alone are refused, per field, by its annotation.
    NaN and infinity are refused too: a learning rate of .nan trains nothing, silently.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value, info):
        field = cls.model_fields.get(info.field_name)
        if field is not None and _bool_for_number(field.annotation, value):
            what = f"{str(value).lower()} is" if isinstance(value, bool) else "it holds"
            raise ValueError(f"{what} a yes/no value where a number is needed: give a number")
        return value


def as_params(model: BaseModel) -> dict:
    """`model` as a plain-JSON dict for a KFP parameter: None left out where it is the default (the
    stage fills it back in), kept where the default is something else (`dropout: null` means "the
    model's dropout", not the 0.0 the field would rebuild as), at every level of nesting."""
    data = model.model_dump(mode="json", exclude_none=True)
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)  # model_dump keys by field name, not alias
        if isinstance(value, BaseModel):
            data[name] = as_params(value)
        elif value is None and not (field.default is None and field.default_factory is None):
            data[name] = None
    return data


class StageConfig(StrictModel):
    model_config = ConfigDict(validate_default=True)  # merged with StrictModel's

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, section: str = "") -> Self:
        try:
            return cls.model_validate(params or {})
        except ValidationError as exc:
            raise UserError(explain(exc, section)) from None


def explain(exc: ValidationError, prefix: str = "") -> str:
    """One line for the first problem pydantic found, naming the dotted key and what to do."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
    key = key if key.isprintable() else key.encode("unicode_escape").decode()  # a typed key may hold a newline
    if err["type"] == "extra_forbidden":
        return f"unknown config key '{key}': check the spelling against the preset (lmforge config show)"
    msg = " ".join(str(err["msg"]).split())  # one line, whatever the message holds
    if err["type"] == "value_error":  # a validator's own sentence already names keys and the fix
        where = f" ({key})" if key else ""
        return f"bad config{where}: {msg.removeprefix('Value error, ')}"
    got = repr(err.get("input"))
    got = got if len(got) <= INPUT_SHOWN else f"{got[:INPUT_SHOWN]}... ({len(got):,} characters)"
    return f"bad config value for '{key or 'the preset'}': {msg} (got {got})"


def _bool_for_number(annotation, value) -> bool:
    """Whether `value` holds a bool where `annotation` wants a number (in lists and dicts too)."""
    options = _options(annotation)
    if isinstance(value, bool):
        return any(t in (int, float) for t in options) and not any(t is bool or t is Any for t in options)
    for t in options:
        origin, args = typing.get_origin(t), typing.get_args(t)
        if isinstance(value, (list, tuple)) and origin in (list, tuple, set, frozenset) and args:
            return any(_bool_for_number(args[0], v) for v in value)
        if isinstance(value, dict) and origin is dict and len(args) == 2:
            return any(_bool_for_number(args[1], v) for v in value.values())
    return False


def _options(annotation) -> list:
    """The alternatives of a union (`int | None` -> [int, NoneType]), Annotated unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _options(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [o for a in typing.get_args(annotation) for o in _options(a)]
    return [annotation]
