"""One entry point to get bars by name: a bundled data set, the synthetic generator or a file.

``load_bars("goog")`` · ``load_bars("synthetic:n_bars=100000,timeframe=1m,seed=3")`` ·
``load_bars("data/btc.csv", timeframe="1m")``
"""

from __future__ import annotations

from pathlib import Path

from raytrader.data.bars import Bars
from raytrader.data.bundled import BUNDLED
from raytrader.data.files import read_bars_file
from raytrader.data.synthetic import SyntheticConfig, synthetic_bars
from raytrader.data.timeframe import Calendar
from raytrader.errors import ConfigError, UnknownNameError

SYNTHETIC = "synthetic"


def dataset_names() -> list[str]:
    return [*BUNDLED, SYNTHETIC]


def parse_synthetic_spec(spec: str) -> SyntheticConfig:
    """``synthetic`` or ``synthetic:key=value,key=value`` → :class:`SyntheticConfig`."""
    _, _, rest = spec.partition(":")
    fields: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"synthetic option {part!r} must be key=value")
        fields[key.strip()] = value.strip()
    return SyntheticConfig.parse(fields, where="synthetic")


def load_bars(
    name: str,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    calendar: Calendar | str | None = None,
    repair: bool = False,
) -> Bars:
    """Resolve ``name`` to validated bars (see module docstring for accepted forms)."""
    key = name.strip()
    if key.lower() in BUNDLED:
        return BUNDLED[key.lower()].load()
    if key.lower() == SYNTHETIC or key.lower().startswith(SYNTHETIC + ":"):
        return synthetic_bars(parse_synthetic_spec(key))
    path = Path(key)
    if path.suffix.lower() in (".csv", ".parquet", ".pq") or path.exists():
        return read_bars_file(
            path,
            symbol=symbol,
            timeframe=timeframe,
            calendar=calendar or Calendar.CRYPTO,
            repair=repair,
        )
    raise UnknownNameError("dataset", key, dataset_names())
