"""The training pipelines' ``python -m`` entry point around a strict config file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from raytrader.config import StrictConfig, load_config
from raytrader.errors import ConfigError

C = TypeVar("C", bound=StrictConfig)


def pipeline_main(
    prog: str,
    schema: type[C],
    run: Callable[[C, Any], Iterable[dict[str, Any]]],
    argv: list[str] | None = None,
    flags: Iterable[tuple[str, str]] = (),
) -> int:
    """A pipeline's ``python -m`` entry point: ``--config FILE`` plus boolean ``flags``
    (name, help); ``run(config, args)`` yields JSON-ready rows, each printed as one line as it
    comes. A bad config or input exits 2 with one ``error:`` line on stderr."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", required=True, help=f"{schema.__name__} as YAML or JSON")
    for name, text in flags:
        parser.add_argument(f"--{name}", action="store_true", help=text)
    args = parser.parse_args(argv)
    try:
        for row in run(load_config(args.config, schema), args):
            print(json.dumps(row), flush=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
