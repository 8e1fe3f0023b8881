"""Base class for every configuration object: strict, frozen, serializable.

Unknown keys are errors, values cannot change after validation, and each config round-trips through
JSON/YAML so a CLI flag, a RayJob entrypoint or a Helm value can name it.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from raytrader.errors import ConfigError


class StrictConfig(BaseModel):
    """A frozen pydantic model that forbids unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def parse(cls, data: dict[str, Any], *, where: str | None = None) -> Self:
        """Validate ``data`` and raise :class:`ConfigError` naming each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, where or cls.__name__)) from exc


def describe_validation_error(exc: ValidationError, where: str) -> str:
    """One line per problem: ``where.field: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}.{loc}: {msg}" if loc else f"{where}: {msg}")
    return "; ".join(parts)
