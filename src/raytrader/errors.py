"""The exceptions raytrader raises on bad input.

Every error a user can cause derives from :class:`RaytraderError`; the CLI turns these into one line on
stderr and exit code 2. Anything else escaping is a bug.
"""

from __future__ import annotations


class RaytraderError(Exception):
    """Base class of user-facing errors (bad data, unknown names, invalid values)."""


class UnknownNameError(RaytraderError, KeyError):
    """An unknown dataset, strategy, feature or other registered name."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class ConfigError(RaytraderError, ValueError):
    """An invalid configuration or parameter value."""


class ServiceError(RaytraderError):
    """A service (Kafka, MLflow, Redis) could not be reached or refused an operation."""


class DataSourceError(RaytraderError):
    """A data source could not be read: missing file, unparsable content, failed download."""


class StoreError(RaytraderError):
    """A Parquet store operation was refused (overlap, out-of-order append, corrupt partition)."""


class ExperimentStoreError(RaytraderError):
    """The experiment store (:mod:`raytrader.db`) is unreachable, not migrated, or refused a record."""


class DataValidationError(RaytraderError, ValueError):
    """Bars broke the bars contract.

    Names the symbol, the rule and the first offending timestamps, with their count.
    """

    MAX_SHOWN = 5

    def __init__(
        self,
        *,
        symbol: str,
        rule: str,
        detail: str,
        rows: list[str] | None = None,
        count: int = 0,
        source: str | None = None,
    ) -> None:
        self.symbol = symbol
        self.rule = rule
        self.detail = detail
        self.rows = list(rows or [])[: self.MAX_SHOWN]
        self.count = count
        self.source = source
        where = f" in {source}" if source else ""
        msg = f"{symbol}{where}: rule '{rule}' violated: {detail}"
        if self.rows:
            more = f" (and {count - len(self.rows)} more)" if count > len(self.rows) else ""
            msg += f"; {count} offending row(s): {'; '.join(self.rows)}{more}"
        super().__init__(msg)
