"""Names shared by every layer, defined once: the bars' columns, the feature service models are
trained and served on, and the account columns a decision may carry.

Nothing here imports any of raytrader: data, features, the simulation, the registry, the environment and the
decision service all take these names from this module.
"""

from __future__ import annotations

import re

#: a bar's price and volume columns, in this order (the bars contract, :mod:`raytrader.data.bars`)
OHLCV: tuple[str, ...] = ("open", "high", "low", "close", "volume")

#: the Feast feature service every registered model reads (its ``raytrader.feature_service`` tag)
FEATURE_SERVICE = "ensemble_v1"

#: the account a decision is made for: position as a fraction of equity, unrealized return of the
#: open position, and bars held (0 = flat when a caller sends none)
ACCOUNT_COLUMNS: tuple[str, ...] = ("exposure", "unrealized", "time_in_position")

#: a feature row's flag: every feature is past its warm-up
WARM_COLUMN = "warm"
#: what a decision row names besides its features: the symbol and the bar's close time (a model
#: with a state per symbol, the meta ensemble, needs them; the others ignore them)
KEY_COLUMNS: tuple[str, ...] = ("symbol", "feature_time")

#: a registered model as the service and ``meta update`` name it: ``models:/<name>@<alias>`` or
#: ``models:/<name>/<version>``
MODEL_URI_RE = re.compile(
    r"^models:/(?P<name>[A-Za-z0-9_.-]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$"
)
