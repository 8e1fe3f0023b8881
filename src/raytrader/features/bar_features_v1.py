"""``bar_features_v1``: the feature set every model, the stream job and the online store share.

Everything is a TA-Lib call. Conventions: returns are simple (``ROCP``), log-returns are ``LN(ROCR)``,
volatilities are population standard deviations (TA-Lib ``STDDEV``, ``nbdev=1``) of 1-bar log-returns,
per bar (not annualized, so the value does not depend on the market calendar). Ratios are unitless.
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


HLC = ("high", "low", "close")

BAR_FEATURES_V1 = FeatureSet(
    name="bar_features_v1",
    description="Returns, volatility, trend, momentum, volume and Bollinger features plus short lags.",
    features=(
        # returns and volatility
        _f("ret_1", "ROCP", timeperiod=1),
        _f("ret_5", "ROCP", timeperiod=5),
        _f("ret_20", "ROCP", timeperiod=20),
        _f("rocr_1", "ROCR", timeperiod=1),
        _f("logret_1", "LN", ("rocr_1",)),
        _f("volatility_10", "STDDEV", ("logret_1",), timeperiod=10, nbdev=1.0),
        _f("volatility_20", "STDDEV", ("logret_1",), timeperiod=20, nbdev=1.0),
        _f("hist_vol_60", "STDDEV", ("logret_1",), timeperiod=60, nbdev=1.0),
        # candle shape
        _f("hl_spread", "SUB", ("high", "low")),
        _f("hl_range", "DIV", ("hl_spread", "close")),
        _f("oc_spread", "SUB", ("close", "open")),
        _f("oc_ratio", "DIV", ("oc_spread", "open")),
        # volume
        _f("volume_sma_20", "SMA", ("volume",), timeperiod=20),
        _f("volume_ratio_20", "DIV", ("volume", "volume_sma_20")),
        _f("volume_sma_5", "SMA", ("volume",), timeperiod=5),
        _f("volume_ratio_5", "DIV", ("volume_sma_5", "volume_sma_20")),
        _f("obv", "OBV", ("close", "volume")),
        _f("adosc", "ADOSC", (*HLC, "volume"), fastperiod=3, slowperiod=10),
        _f("mfi_14", "MFI", (*HLC, "volume"), timeperiod=14),
        # moving averages
        _f("sma_10", "SMA", timeperiod=10),
        _f("sma_20", "SMA", timeperiod=20),
        _f("sma_50", "SMA", timeperiod=50),
        _f("ema_10", "EMA", timeperiod=10),
        _f("ema_20", "EMA", timeperiod=20),
        _f("ema_50", "EMA", timeperiod=50),
        _f("wma_20", "WMA", timeperiod=20),
        _f("dema_20", "DEMA", timeperiod=20),
        _f("tema_20", "TEMA", timeperiod=20),
        _f("kama_30", "KAMA", timeperiod=30),
        _f("close_sma_20_ratio", "DIV", ("close", "sma_20")),
        _f("ema_10_50_ratio", "DIV", ("ema_10", "ema_50")),
        # momentum / oscillators
        _f("rsi_7", "RSI", timeperiod=7),
        _f("rsi_14", "RSI", timeperiod=14),
        _f("macd", "MACD", output="macd", fastperiod=12, slowperiod=26, signalperiod=9),
        _f(
            "macd_signal", "MACD", output="macdsignal", fastperiod=12, slowperiod=26, signalperiod=9
        ),
        _f("macd_hist", "MACD", output="macdhist", fastperiod=12, slowperiod=26, signalperiod=9),
        _f("ppo", "PPO", fastperiod=12, slowperiod=26, matype=1),
        _f("trix_15", "TRIX", timeperiod=15),
        _f("cmo_14", "CMO", timeperiod=14),
        _f("ultosc", "ULTOSC", HLC, timeperiod1=7, timeperiod2=14, timeperiod3=28),
        _f("bop", "BOP", ("open", "high", "low", "close")),
        _f("roc_10", "ROC", timeperiod=10),
        _f("mom_10", "MOM", timeperiod=10),
        _f(
            "stoch_k", "STOCH", HLC, output="slowk", fastk_period=14, slowk_period=3, slowd_period=3
        ),
        _f(
            "stoch_d", "STOCH", HLC, output="slowd", fastk_period=14, slowk_period=3, slowd_period=3
        ),
        _f("cci_20", "CCI", HLC, timeperiod=20),
        _f("willr_14", "WILLR", HLC, timeperiod=14),
        # trend strength
        _f("adx_14", "ADX", HLC, timeperiod=14),
        _f("plus_di_14", "PLUS_DI", HLC, timeperiod=14),
        _f("minus_di_14", "MINUS_DI", HLC, timeperiod=14),
        _f("aroon_down_14", "AROON", ("high", "low"), output="aroondown", timeperiod=14),
        _f("aroon_up_14", "AROON", ("high", "low"), output="aroonup", timeperiod=14),
        _f("aroon_osc_14", "AROONOSC", ("high", "low"), timeperiod=14),
        _f("atr_14", "ATR", HLC, timeperiod=14),
        _f("natr_14", "NATR", HLC, timeperiod=14),
        # Bollinger bands
        _f("bb_upper", "BBANDS", output="upperband", timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
        _f("bb_middle", "BBANDS", output="middleband", timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
        _f("bb_lower", "BBANDS", output="lowerband", timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
        _f("bb_band", "SUB", ("bb_upper", "bb_lower")),
        _f("bb_pos", "SUB", ("close", "bb_lower")),
        _f("bb_pctb", "DIV", ("bb_pos", "bb_band")),
        _f("bb_width", "DIV", ("bb_band", "bb_middle")),
        # short history, served from one row
        _f("ret_1_lag1", None, ("ret_1",), lag=1),
        _f("ret_1_lag2", None, ("ret_1",), lag=2),
        _f("ret_1_lag3", None, ("ret_1",), lag=3),
        _f("rsi_14_lag1", None, ("rsi_14",), lag=1),
        _f("rsi_14_lag2", None, ("rsi_14",), lag=2),
        _f("macd_hist_lag1", None, ("macd_hist",), lag=1),
        _f("volatility_20_lag1", None, ("volatility_20",), lag=1),
        _f("volume_ratio_20_lag1", None, ("volume_ratio_20",), lag=1),
    ),
)
