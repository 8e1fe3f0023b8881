"""Strict config files (YAML or JSON) for the training pipelines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError

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
