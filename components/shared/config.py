"""Typed stage configuration.

Each stage declares a `StageConfig` subclass next to its function. Unknown keys and wrong types
are errors that name the key; a preset section travels into a KFP task as a plain dict parameter
and the stage rebuilds its typed config from it with `from_params`.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from components.shared.errors import UserError


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

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
    if err["type"] == "extra_forbidden":
        return f"unknown config key '{key}': check the spelling against the preset (lmforge config show)"
    if err["type"] == "value_error":  # a validator's own sentence already names keys and the fix
        where = f" ({key})" if key else ""
        return f"bad config{where}: {str(err['msg']).removeprefix('Value error, ')}"
    return f"bad config value for '{key}': {err['msg']} (got {err.get('input')!r})"
