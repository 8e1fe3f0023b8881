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
history from one row, as in v1. Where v1 and v2 share a name (``logret_1``, ``rsi_14``...), the
definition is the same.
"""

from __future__ import annotations

from raytrader.features.spec import FeatureSet, FeatureSpec


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

#: moving averages compared with close: (name, TA-Lib function, period)
_AVERAGES = (
    ("sma_10", "SMA", 10),
    ("sma_20", "SMA", 20),
    ("sma_50", "SMA", 50),
    ("ema_10", "EMA", 10),
    ("ema_20", "EMA", 20),
    ("ema_50", "EMA", 50),
    ("wma_20", "WMA", 20),
    ("dema_20", "DEMA", 20),
    ("tema_20", "TEMA", 20),
)
#: log-ratio features: (name, numerator, denominator), each over a bar column or an average above
_LOG_RATIOS = (
    ("hl_logrange", "high", "low"),
    ("oc_logret", "close", "open"),
    ("gap_logret", "open", "close_lag1"),
    *((f"close_to_{ma}", "close", ma) for ma, _, _ in _AVERAGES),
    ("sma_10_to_50", "sma_10", "sma_50"),
    ("ema_10_to_50", "ema_10", "ema_50"),
)
_RATIO_SPECS = {name: _log_ratio(name, num, den) for name, num, den in _LOG_RATIOS}

INTERMEDIATES: tuple[FeatureSpec, ...] = (
    # price levels: moving averages, bands, MACD lines, the previous close
    *(_f(ma, fn, timeperiod=period) for ma, fn, period in _AVERAGES),
    _f("close_lag1", None, ("close",), lag=1),
    *(ratio for ratio, _ in _RATIO_SPECS.values()),
    _f("rocr_1", "ROCR", timeperiod=1),
    _f("rocr_5", "ROCR", timeperiod=5),
    _f("rocr_10", "ROCR", timeperiod=10),
    _f("rocr_20", "ROCR", timeperiod=20),
    _f("hl_spread", "SUB", ("high", "low")),
    _f("cl_spread", "SUB", ("close", "low")),
    _f("bb_upper", "BBANDS", output="upperband", timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
    _f("bb_middle", "BBANDS", output="middleband", timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
    _f("bb_lower", "BBANDS", output="lowerband", timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
    _f("bb_band", "SUB", ("bb_upper", "bb_lower")),
    _f("bb_pos", "SUB", ("close", "bb_lower")),
    _f("macd", "MACD", output="macd", fastperiod=12, slowperiod=26, signalperiod=9),
    _f("macd_signal", "MACD", output="macdsignal", fastperiod=12, slowperiod=26, signalperiod=9),
    _f("macd_hist", "MACD", output="macdhist", fastperiod=12, slowperiod=26, signalperiod=9),
    # volume levels: averages, sums, cumulative OBV and Chaikin A/D (differenced below)
    _f("volume_sma_5", "SMA", ("volume",), timeperiod=5),
    _f("volume_sma_20", "SMA", ("volume",), timeperiod=20),
    _f("volume_sum_20", "SUM", ("volume",), timeperiod=20),
    _f("obv", "OBV", ("close", "volume")),
    _f("obv_lag20", None, ("obv",), lag=20),
    _f("obv_change_20", "SUB", ("obv", "obv_lag20")),
    _f("adosc", "ADOSC", (*HLC, "volume"), fastperiod=3, slowperiod=10),
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
        _f("logret_1", "LN", ("rocr_1",)),
        _f("logret_5", "LN", ("rocr_5",)),
        _f("logret_10", "LN", ("rocr_10",)),
        _f("logret_20", "LN", ("rocr_20",)),
        _f("volatility_10", "STDDEV", ("logret_1",), timeperiod=10, nbdev=1.0),
        _f("volatility_20", "STDDEV", ("logret_1",), timeperiod=20, nbdev=1.0),
        _f("hist_vol_60", "STDDEV", ("logret_1",), timeperiod=60, nbdev=1.0),
        _f("vol_ratio_10_60", "DIV", ("volatility_10", "hist_vol_60")),
        # candle shape: log range, body, overnight gap, where the close sits in the range
        _RATIO_SPECS["hl_logrange"][1],
        _RATIO_SPECS["oc_logret"][1],
        _RATIO_SPECS["gap_logret"][1],
        _f("close_loc", "DIV", ("cl_spread", "hl_spread")),
        # volume, relative to its own average; OBV as the signed share of the last 20 bars' volume
        _f("volume_ratio_20", "DIV", ("volume", "volume_sma_20")),
        _f("volume_ratio_5", "DIV", ("volume_sma_5", "volume_sma_20")),
        _f("obv_flow_20", "DIV", ("obv_change_20", "volume_sum_20")),
        _f("adosc_ratio", "DIV", ("adosc", "volume_sma_20")),
        _f("mfi_14", "MFI", (*HLC, "volume"), timeperiod=14),
        # trend: log distance of close from its averages, and of a fast average from a slow one
        *(_RATIO_SPECS[f"close_to_{ma}"][1] for ma, _, _ in _AVERAGES),
        _RATIO_SPECS["sma_10_to_50"][1],
        _RATIO_SPECS["ema_10_to_50"][1],
        # momentum / oscillators (bounded or unitless)
        _f("rsi_7", "RSI", timeperiod=7),
        _f("rsi_14", "RSI", timeperiod=14),
        _f("macd_norm", "DIV", ("macd", "close")),
        _f("macd_signal_norm", "DIV", ("macd_signal", "close")),
        _f("macd_hist_norm", "DIV", ("macd_hist", "close")),
        _f("ppo", "PPO", fastperiod=12, slowperiod=26, matype=1),
        _f("trix_15", "TRIX", timeperiod=15),
        _f("cmo_14", "CMO", timeperiod=14),
        _f("ultosc", "ULTOSC", HLC, timeperiod1=7, timeperiod2=14, timeperiod3=28),
        _f("bop", "BOP", ("open", "high", "low", "close")),
        _f(
            "stoch_k", "STOCH", HLC, output="slowk", fastk_period=14, slowk_period=3, slowd_period=3
        ),
        _f(
            "stoch_d", "STOCH", HLC, output="slowd", fastk_period=14, slowk_period=3, slowd_period=3
        ),
        _f("cci_20", "CCI", HLC, timeperiod=20),
        _f("willr_14", "WILLR", HLC, timeperiod=14),
        # trend strength and volatility relative to price
        _f("adx_14", "ADX", HLC, timeperiod=14),
        _f("plus_di_14", "PLUS_DI", HLC, timeperiod=14),
        _f("minus_di_14", "MINUS_DI", HLC, timeperiod=14),
        _f("aroon_down_14", "AROON", ("high", "low"), output="aroondown", timeperiod=14),
        _f("aroon_up_14", "AROON", ("high", "low"), output="aroonup", timeperiod=14),
        _f("aroon_osc_14", "AROONOSC", ("high", "low"), timeperiod=14),
        _f("natr_14", "NATR", HLC, timeperiod=14),
        # Bollinger bands, positioned and sized relative to price
        _f("bb_pctb", "DIV", ("bb_pos", "bb_band")),
        _f("bb_width", "DIV", ("bb_band", "bb_middle")),
        # short history, served from one row
        _f("logret_1_lag1", None, ("logret_1",), lag=1),
        _f("logret_1_lag2", None, ("logret_1",), lag=2),
        _f("logret_1_lag3", None, ("logret_1",), lag=3),
        _f("rsi_14_lag1", None, ("rsi_14",), lag=1),
        _f("rsi_14_lag2", None, ("rsi_14",), lag=2),
        _f("macd_hist_norm_lag1", None, ("macd_hist_norm",), lag=1),
        _f("volatility_20_lag1", None, ("volatility_20",), lag=1),
        _f("volume_ratio_20_lag1", None, ("volume_ratio_20",), lag=1),
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
