"""Base class for every configuration object: strict, frozen, serializable.

Unknown keys are errors, values cannot change after validation, and each config round-trips through
JSON/YAML so a CLI flag, a RayJob entrypoint or a Helm value can name it; :func:`load_config`
reads one from a YAML or JSON file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self, TypeVar

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


C = TypeVar("C", bound=StrictConfig)


def load_config(path: str | Path, schema: type[C]) -> C:
    """Parse ``path`` (``.yaml``/``.yml``/``.json``) into ``schema``; every problem is a
    :class:`ConfigError` naming the file and the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{p}: use a .yaml, .yml or .json config file")
    except ValueError as exc:  # json.JSONDecodeError
        raise ConfigError(f"{p}: not valid JSON: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError, without importing yaml for JSON files
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        raise
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the config must be a mapping of fields, got {type(data).__name__}")
    return schema.parse(data, where=p.name)


def pipeline_main(
    prog: str,
    schema: type[C],
    run: Callable[[C, Any], Iterable[dict[str, Any]]],
    argv: list[str] | None = None,
    flags: Iterable[tuple[str, str]] = (),
) -> int:
    """A pipeline's ``python -m`` entry point: ``--config FILE`` (or ``--config-json TEXT``, the
    config itself: how the experiment API resubmits a stored config as a Ray job) plus boolean
    ``flags`` (name, help); ``run(config, args)`` yields JSON-ready rows, each printed as one line
    as it comes. A bad config or input exits 2 with one ``error:`` line on stderr."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog=prog)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help=f"{schema.__name__} as YAML or JSON")
    source.add_argument("--config-json", help=f"{schema.__name__} as one JSON object")
    for name, text in flags:
        parser.add_argument(f"--{name}", action="store_true", help=text)
    args = parser.parse_args(argv)
    try:
        if args.config is not None:
            config = load_config(args.config, schema)
        else:
            try:
                data = json.loads(args.config_json)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--config-json: not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise ConfigError("--config-json: expected a JSON object")
            config = schema.parse(data, where="--config-json")
        for row in run(config, args):
            print(json.dumps(row), flush=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
