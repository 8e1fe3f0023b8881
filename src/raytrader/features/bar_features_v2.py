"""``bar_features_v2``: a scale-free feature set for models that must generalize across price levels.

``bar_features_v1`` carries price levels (SMA, EMA, Bollinger bands, ATR, MACD in price units) and
cumulative levels (OBV, whose value depends on the bar the series starts at). A model fed those
learns the price range of its training years: GOOG at $200 and GOOG at $600 look like different
markets. Every column of v2 is instead

* **scale-free**: unchanged when all prices are multiplied by a constant, and when the volume is
  (a split, a currency, another listing);
* **free of the series' start** beyond its warm-up: no cumulative level is a column. Non-recursive
  features (rolling windows: SMA, STDDEV, SUM, WILLR, CCI, Aroon, Stochastic, MFI, ULTOSC...) are
  equal on any two series that share the last window of bars, to float rounding. Recursive ones
  (EMA and everything built on it — DEMA, TEMA, MACD, PPO, TRIX, ADOSC — and Wilder's smoothing in
  RSI, CMO, NATR, ADX/DI) start from a seed whose effect decays geometrically, at least as fast as
  the slowest EMA's (period 50: a factor 49/51 a bar): after TA-Lib's lookback they are valid but
  still carry it. ``RECURSIVE`` names them; the tests bound how fast it fades (below 1e-6 of the
  feature's standard deviation 400 bars after the warm-up). KAMA is left out on purpose: its
  smoothing constant falls to (2/31)² ≈ 0.004 in a sideways market, so its seed can persist for
  thousands of bars.

How: price-level series (moving averages, bands, MACD lines, OBV, Chaikin A/D) are
**intermediates** — computed, used, never emitted — and the columns are TA-Lib compositions of
them: log ratios ``x_to_y = LN(DIV(x, y))`` (``close_to_sma_20`` is ln(close / SMA20), positive
above the average), log returns ``LN(ROCR)``, volatility of log returns, volume as a ratio to its
own average, OBV *differences* over a window divided by the volume traded in it, MACD divided by
close, and the oscillators that are already bounded or unitless (RSI, Stochastic, MFI, CCI,
Williams %R, ADX/DI, Aroon, BOP, Ultimate oscillator, CMO, PPO, TRIX, NATR). Lags give a short
history from one row, as in v1. Where v1 and v2 share a name (``logret_1``, ``rsi_14``...), v2
takes v1's spec itself, so the definition is the same by construction.
"""

from __future__ import annotations

from raytrader.features.bar_features_v1 import BAR_FEATURES_V1
from raytrader.features.spec import FeatureSet, FeatureSpec

#: v1's specs by name: a series both sets use is v1's definition, taken as it is (one definition)
_V1 = {spec.name: spec for spec in (*BAR_FEATURES_V1.intermediates, *BAR_FEATURES_V1.features)}


def _v1(name: str) -> FeatureSpec:
    return _V1[name]


def _f(
    name: str,
    fn: str | None,
    inputs: tuple[str, ...] = ("close",),
    output: str | None = None,
    lag: int = 0,
    **params: int | float,
) -> FeatureSpec:
    return FeatureSpec(name=name, fn=fn, inputs=inputs, params=params, output=output, lag=lag)


def _log_ratio(name: str, num: str, den: str) -> tuple[FeatureSpec, FeatureSpec]:
    """(intermediate ``num / den``, feature ``LN(num / den)``)."""
    return _f(f"{name}_ratio", "DIV", (num, den)), _f(name, "LN", (f"{name}_ratio",))


HLC = ("high", "low", "close")

#: v1's moving averages (intermediates here), compared with close
_AVERAGES = (
    "sma_10",
    "sma_20",
    "sma_50",
    "ema_10",
    "ema_20",
    "ema_50",
    "wma_20",
    "dema_20",
    "tema_20",
)
#: log-ratio features: (name, numerator, denominator), each over a bar column or an average above
_LOG_RATIOS = (
    ("hl_logrange", "high", "low"),
    ("oc_logret", "close", "open"),
    ("gap_logret", "open", "close_lag1"),
    *((f"close_to_{ma}", "close", ma) for ma in _AVERAGES),
    ("sma_10_to_50", "sma_10", "sma_50"),
    ("ema_10_to_50", "ema_10", "ema_50"),
)
_RATIO_SPECS = {name: _log_ratio(name, num, den) for name, num, den in _LOG_RATIOS}

INTERMEDIATES: tuple[FeatureSpec, ...] = (
    # price levels: moving averages, bands, MACD lines, the previous close
    *(_v1(ma) for ma in _AVERAGES),
    _f("close_lag1", None, ("close",), lag=1),
    *(ratio for ratio, _ in _RATIO_SPECS.values()),
    _v1("rocr_1"),
    _f("rocr_5", "ROCR", timeperiod=5),
    _f("rocr_10", "ROCR", timeperiod=10),
    _f("rocr_20", "ROCR", timeperiod=20),
    _v1("hl_spread"),
    _f("cl_spread", "SUB", ("close", "low")),
    _v1("bb_upper"),
    _v1("bb_middle"),
    _v1("bb_lower"),
    _v1("bb_band"),
    _v1("bb_pos"),
    _v1("macd"),
    _v1("macd_signal"),
    _v1("macd_hist"),
    # volume levels: averages, sums, cumulative OBV and Chaikin A/D (differenced below)
    _v1("volume_sma_5"),
    _v1("volume_sma_20"),
    _f("volume_sum_20", "SUM", ("volume",), timeperiod=20),
    _v1("obv"),
    _f("obv_lag20", None, ("obv",), lag=20),
    _f("obv_change_20", "SUB", ("obv", "obv_lag20")),
    _v1("adosc"),
)


BAR_FEATURES_V2 = FeatureSet(
    name="bar_features_v2",
    description=(
        "Scale-free returns, volatility, candle, volume, trend, momentum and Bollinger features "
        "(ratios to close, log differences, no price or cumulative levels) plus short lags."
    ),
    intermediates=INTERMEDIATES,
    features=(
        # returns and volatility (per bar, not annualized)
        _v1("logret_1"),
        _f("logret_5", "LN", ("rocr_5",)),
        _f("logret_10", "LN", ("rocr_10",)),
        _f("logret_20", "LN", ("rocr_20",)),
        _v1("volatility_10"),
        _v1("volatility_20"),
        _v1("hist_vol_60"),
        _f("vol_ratio_10_60", "DIV", ("volatility_10", "hist_vol_60")),
        # candle shape: log range, body, overnight gap, where the close sits in the range
        _RATIO_SPECS["hl_logrange"][1],
        _RATIO_SPECS["oc_logret"][1],
        _RATIO_SPECS["gap_logret"][1],
        _f("close_loc", "DIV", ("cl_spread", "hl_spread")),
        # volume, relative to its own average; OBV as the signed share of the last 20 bars' volume
        _v1("volume_ratio_20"),
        _v1("volume_ratio_5"),
        _f("obv_flow_20", "DIV", ("obv_change_20", "volume_sum_20")),
        _f("adosc_ratio", "DIV", ("adosc", "volume_sma_20")),
        _v1("mfi_14"),
        # trend: log distance of close from its averages, and of a fast average from a slow one
        *(_RATIO_SPECS[f"close_to_{ma}"][1] for ma in _AVERAGES),
        _RATIO_SPECS["sma_10_to_50"][1],
        _RATIO_SPECS["ema_10_to_50"][1],
        # momentum / oscillators (bounded or unitless)
        _v1("rsi_7"),
        _v1("rsi_14"),
        _f("macd_norm", "DIV", ("macd", "close")),
        _f("macd_signal_norm", "DIV", ("macd_signal", "close")),
        _f("macd_hist_norm", "DIV", ("macd_hist", "close")),
        _v1("ppo"),
        _v1("trix_15"),
        _v1("cmo_14"),
        _v1("ultosc"),
        _v1("bop"),
        _v1("stoch_k"),
        _v1("stoch_d"),
        _v1("cci_20"),
        _v1("willr_14"),
        # trend strength and volatility relative to price
        _v1("adx_14"),
        _v1("plus_di_14"),
        _v1("minus_di_14"),
        _v1("aroon_down_14"),
        _v1("aroon_up_14"),
        _v1("aroon_osc_14"),
        _v1("natr_14"),
        # Bollinger bands, positioned and sized relative to price
        _v1("bb_pctb"),
        _v1("bb_width"),
        # short history, served from one row
        _f("logret_1_lag1", None, ("logret_1",), lag=1),
        _f("logret_1_lag2", None, ("logret_1",), lag=2),
        _f("logret_1_lag3", None, ("logret_1",), lag=3),
        _v1("rsi_14_lag1"),
        _v1("rsi_14_lag2"),
        _f("macd_hist_norm_lag1", None, ("macd_hist_norm",), lag=1),
        _v1("volatility_20_lag1"),
        _v1("volume_ratio_20_lag1"),
    ),
)

#: TA-Lib functions that smooth recursively (a seeded EMA or Wilder's smoothing); PPO only with an
#: exponential ``matype``
RECURSIVE_FUNCTIONS = frozenset(
    [
        "EMA",
        "DEMA",
        "TEMA",
        "KAMA",
        "MACD",
        "TRIX",
        "ADOSC",
        "RSI",
        "CMO",
        "ATR",
        "NATR",
        "ADX",
        "PLUS_DI",
        "MINUS_DI",
    ]
)


def recursive_features(feature_set: FeatureSet) -> frozenset[str]:
    """Features with a recursive TA-Lib call anywhere among their inputs: after the warm-up they
    are valid but still carry the seed of the recursion, fading geometrically (see the tests)."""
    hit: set[str] = set()
    for spec in (*feature_set.intermediates, *feature_set.features):
        own = spec.fn in RECURSIVE_FUNCTIONS or (spec.fn == "PPO" and spec.params.get("matype", 0))
        if own or any(ref in hit for ref in spec.inputs):
            hit.add(spec.name)
    return frozenset(hit & set(feature_set.names))


RECURSIVE: frozenset[str] = recursive_features(BAR_FEATURES_V2)
