"""bar_features_v2: every column scale-free and free of where the series starts (beyond the warm-up),
causal (truncation invariance), warm-ups from TA-Lib's lookbacks, and the spec's intermediates.

Tolerances, stated once. Two runs of TA-Lib on differently scaled or differently started inputs do
not round identically (its rolling windows keep running sums), so "equal" means within
``EXACT = 1e-9`` of the feature's standard deviation on the series; the largest differences seen
are ~1e-10 (scaling by 1000) and ~1e-11 (a later start). Scaling by a power of two is exact in
floating point and must change nothing, bit for bit. Recursive features (``RECURSIVE``) keep their
seed after TA-Lib's warm-up; they must agree within ``SETTLED = 1e-6`` standard deviations
``SETTLE_BARS = 400`` bars after it (the slowest recursion, the 50-bar EMA, shrinks the seed's
effect by 49/51 a bar: 0.96^400 ≈ 1e-7; measured on GOOG, EURUSD and synthetic 1m bars: at most
314 bars).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib
from pydantic import ValidationError

from raytrader.data import Bars
from raytrader.errors import UnknownNameError
from raytrader.features import (
    BAR_FEATURES_V1,
    BAR_FEATURES_V2,
    WARM_COLUMN,
    FeatureSet,
    FeatureSpec,
    compute_features,
    get_feature_set,
)
from raytrader.features.bar_features_v2 import RECURSIVE
from raytrader.features.engine import compute_arrays

NAMES = BAR_FEATURES_V2.names
NON_RECURSIVE = [n for n in NAMES if n not in RECURSIVE]
EXACT = 1e-9
SETTLED = 1e-6
SETTLE_BARS = 400


@pytest.fixture(scope="module")
def v2_goog(goog: Bars) -> pd.DataFrame:
    return compute_features(goog, BAR_FEATURES_V2)


@pytest.fixture(scope="module")
def syn_1m(synthetic_bars: Callable[..., Bars]) -> Bars:
    return synthetic_bars(n=5000, seed=3, timeframe="1m")


def scaled(bars: Bars, price: float = 1.0, volume: float = 1.0) -> Bars:
    frame = bars.frame.copy()
    for c in ("open", "high", "low", "close"):
        frame[c] = frame[c] * price
    frame["volume"] = frame["volume"] * volume
    return Bars.from_frame(
        frame,
        symbol=bars.symbol,
        timeframe=bars.timeframe.name,
        calendar=bars.calendar,
        source="test",
    )


def without_first(bars: Bars, k: int) -> Bars:
    mask = np.zeros(len(bars), dtype=bool)
    mask[k:] = True
    return bars.head_mask(mask)


def assert_close(a: np.ndarray, b: np.ndarray, tol: float, what: str) -> None:
    """Same NaN pattern; elsewhere |a - b| <= tol x std(a)."""
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: NaN where the other is not"
    scale = float(np.nanstd(a)) or 1.0
    worst = float(np.nanmax(np.abs(a - b), initial=0.0)) / scale
    assert worst <= tol, f"{what}: differs by {worst:.3g} standard deviations (> {tol:g})"


# ---- content -----------------------------------------------------------------------------------------


def test_v2_is_registered_by_name_and_v1_is_unchanged() -> None:
    assert get_feature_set("bar_features_v2") is BAR_FEATURES_V2
    assert get_feature_set("bar_features_v1") is BAR_FEATURES_V1
    with pytest.raises(UnknownNameError, match="bar_features_v1, bar_features_v2"):
        get_feature_set("bar_features_v3")
    # v1 is served and stored in Feast: no intermediates, the same 70 columns
    assert BAR_FEATURES_V1.intermediates == ()
    assert len(BAR_FEATURES_V1.names) == 70


def test_every_v2_spec_is_a_talib_call_or_a_lag_and_names_are_unique() -> None:
    all_fns = set(talib.get_functions())
    specs = (*BAR_FEATURES_V2.intermediates, *BAR_FEATURES_V2.features)
    for spec in specs:
        assert spec.fn is None or spec.fn in all_fns, spec.name
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert len(NAMES) == 59


def test_no_v2_column_is_a_price_volume_or_cumulative_level(v2_goog: pd.DataFrame) -> None:
    levels = {"obv", "adosc", "sma_20", "ema_50", "bb_upper", "macd", "atr_14", "volume_sma_20"}
    assert not levels & set(v2_goog.columns)
    assert list(v2_goog.columns) == [*NAMES, WARM_COLUMN]
    # the levels exist, as intermediates the columns are built from
    assert {"obv", "adosc", "sma_20", "bb_upper", "macd"} <= {
        s.name for s in BAR_FEATURES_V2.intermediates
    }


def test_shared_names_mean_the_same_feature_in_v1_and_v2(goog: Bars, v2_goog) -> None:
    v1 = compute_features(goog)
    shared = sorted(set(NAMES) & set(BAR_FEATURES_V1.names))
    assert len(shared) >= 25
    for name in shared:
        assert np.array_equal(v1[name].to_numpy(), v2_goog[name].to_numpy(), equal_nan=True), name


def test_log_ratio_and_obv_flow_definitions(goog: Bars, v2_goog) -> None:
    close = goog.column("close")
    expected = np.log(close / talib.SMA(close, timeperiod=20))
    np.testing.assert_allclose(v2_goog["close_to_sma_20"], expected, rtol=1e-12, equal_nan=True)
    # OBV's change over 20 bars is the signed volume of those bars: a share of their volume
    vol = goog.column("volume")
    signed = np.sign(np.diff(close, prepend=np.nan)) * vol
    flow = pd.Series(signed).rolling(20).sum() / pd.Series(vol).rolling(20).sum()
    got = v2_goog["obv_flow_20"].to_numpy()
    np.testing.assert_allclose(got[21:], flow.to_numpy()[21:], rtol=1e-9, atol=1e-12)
    assert np.abs(got[21:]).max() <= 1.0


# ---- scale invariance ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("price", "volume"), [(1000.0, 1.0), (1.0, 37.0), (0.01, 250.0)])
def test_every_feature_is_unchanged_when_prices_or_volume_are_rescaled(
    goog: Bars, v2_goog, price: float, volume: float
) -> None:
    out = compute_features(scaled(goog, price, volume), BAR_FEATURES_V2)
    for name in NAMES:
        assert_close(v2_goog[name].to_numpy(), out[name].to_numpy(), EXACT, name)


@pytest.mark.parametrize(("price", "volume"), [(1024.0, 1.0), (1 / 1024, 4096.0)])
def test_a_power_of_two_rescaling_changes_no_bit(
    goog: Bars, v2_goog, price: float, volume: float
) -> None:
    """Multiplying by 2^k is exact, so every TA-Lib step rounds the same way: bit-equal output.
    (Other factors can break exact ties, e.g. +DM == -DM in ADX/DI, hence the tolerance above.)"""
    out = compute_features(scaled(goog, price, volume), BAR_FEATURES_V2)
    for name in NAMES:
        assert np.array_equal(v2_goog[name].to_numpy(), out[name].to_numpy(), equal_nan=True), name


def test_v1_is_not_scale_free_which_is_why_v2_exists(goog: Bars) -> None:
    base = compute_features(goog)
    out = compute_features(scaled(goog, 1000.0), BAR_FEATURES_V1)
    moved = [
        n
        for n in ("sma_20", "atr_14", "macd", "bb_upper", "mom_10")
        if not np.allclose(base[n], out[n], equal_nan=True)
    ]
    assert moved == ["sma_20", "atr_14", "macd", "bb_upper", "mom_10"]


# ---- independence from the series' start -----------------------------------------------------------


@pytest.mark.parametrize("k", [1, 17, 61, 300])
def test_non_recursive_features_do_not_depend_on_where_the_series_starts(
    goog: Bars, syn_1m: Bars, k: int
) -> None:
    """Drop the first k bars: once both series are warm, every non-recursive feature is the same
    (OBV is cumulative, but only its 20-bar change is a feature)."""
    for bars in (goog, syn_1m):
        full = compute_features(bars, BAR_FEATURES_V2)
        late = compute_features(without_first(bars, k), BAR_FEATURES_V2)
        w = BAR_FEATURES_V2.warmup
        for name in NON_RECURSIVE:
            a = full[name].to_numpy()[k + w :]
            b = late[name].to_numpy()[w:]
            assert_close(a, b, EXACT, f"{bars.symbol} {name} without the first {k} bars")


@pytest.mark.parametrize("k", [1, 17, 61, 300])
def test_recursive_features_forget_the_start_within_the_settle_horizon(
    goog: Bars, syn_1m: Bars, k: int
) -> None:
    for bars in (goog, syn_1m):
        full = compute_features(bars, BAR_FEATURES_V2)
        late = compute_features(without_first(bars, k), BAR_FEATURES_V2)
        skip = BAR_FEATURES_V2.warmup + SETTLE_BARS
        for name in sorted(RECURSIVE):
            a = full[name].to_numpy()[k + skip :]
            b = late[name].to_numpy()[skip:]
            assert_close(a, b, SETTLED, f"{bars.symbol} {name} without the first {k} bars")


def test_recursive_features_do_carry_their_seed_right_after_the_warm_up(goog: Bars) -> None:
    """The RECURSIVE list is not padded: each of them differs beyond float rounding at the warm-up,
    so 'warm' means valid, not yet free of the start — a model should not read it otherwise."""
    assert len(RECURSIVE) == 22
    full = compute_features(goog, BAR_FEATURES_V2)
    late = compute_features(without_first(goog, 17), BAR_FEATURES_V2)
    w = BAR_FEATURES_V2.warmup
    for name in sorted(RECURSIVE):
        a = full[name].to_numpy()[17 + w : 17 + w + 20]
        b = late[name].to_numpy()[w : w + 20]
        assert np.abs(a - b).max() > EXACT * float(np.nanstd(full[name])), name


# ---- truncation invariance and warm-ups ------------------------------------------------------------


def _assert_prefix_equal(bars: Bars, full: pd.DataFrame, cuts: list[int]) -> None:
    for cut in cuts:
        part = compute_features(bars.head(cut), BAR_FEATURES_V2)
        assert list(part.columns) == list(full.columns)
        for name in NAMES:
            assert np.array_equal(
                part[name].to_numpy(), full[name].to_numpy()[:cut], equal_nan=True
            ), f"{name} differs when computed on the first {cut} bars"
        assert np.array_equal(part[WARM_COLUMN].to_numpy(), full[WARM_COLUMN].to_numpy()[:cut])


def test_v2_on_a_prefix_equals_the_full_computation(goog: Bars, v2_goog, syn_1m: Bars) -> None:
    rng = np.random.default_rng(20240102)
    w = BAR_FEATURES_V2.warmup
    cuts = sorted({1, 2, 21, w, w + 1, *rng.integers(3, len(goog), size=8).tolist()})
    _assert_prefix_equal(goog, v2_goog, cuts)
    full = compute_features(syn_1m, BAR_FEATURES_V2)
    _assert_prefix_equal(syn_1m, full, sorted(rng.integers(3, len(syn_1m), size=6).tolist()))


@pytest.mark.parametrize("name", NAMES)
def test_v2_first_valid_index_equals_declared_warmup(v2_goog, name: str) -> None:
    values = v2_goog[name].to_numpy()
    warm = BAR_FEATURES_V2.warmups[name]
    assert int(np.flatnonzero(~np.isnan(values))[0]) == warm
    assert np.isnan(values[:warm]).all()


def test_v2_warms_up_with_v1_so_rl_splits_coincide(v2_goog) -> None:
    """Both sets are warm from bar 60 (the 60-bar volatility of log returns): a Market split of
    the same bars has the same training and test rows whichever set the agent observes."""
    assert BAR_FEATURES_V2.warmup == BAR_FEATURES_V1.warmup == 60
    assert BAR_FEATURES_V2.warmups["close_to_sma_50"] == 49
    assert BAR_FEATURES_V2.warmups["obv_flow_20"] == 20
    assert BAR_FEATURES_V2.warmups["gap_logret"] == 1
    assert BAR_FEATURES_V2.warmups["macd_hist_norm_lag1"] == 34
    warm = v2_goog[WARM_COLUMN].to_numpy()
    assert not warm[:60].any()
    assert warm[60:].all()
    assert not v2_goog.iloc[60:].drop(columns=WARM_COLUMN).isna().any().any()


def test_v2_json_round_trip_keeps_the_intermediates(goog: Bars, v2_goog) -> None:
    again = FeatureSet.model_validate_json(BAR_FEATURES_V2.model_dump_json())
    assert again == BAR_FEATURES_V2
    assert again.warmups == BAR_FEATURES_V2.warmups
    out = compute_features(goog, again)
    assert out.equals(v2_goog)


# ---- intermediates in the spec ---------------------------------------------------------------------


def test_intermediates_are_computed_for_later_specs_but_not_emitted() -> None:
    fs = FeatureSet(
        name="inter_v1",
        intermediates=(
            FeatureSpec(name="sma_3", fn="SMA", params={"timeperiod": 3}),
            FeatureSpec(name="sma_3_lag1", fn=None, inputs=("sma_3",), lag=1),
        ),
        features=(FeatureSpec(name="sma_ratio", fn="DIV", inputs=("sma_3", "sma_3_lag1")),),
    )
    close = np.arange(1.0, 9.0)
    out = compute_arrays(fs, {c: close for c in ("open", "high", "low", "close", "volume")})
    assert list(out) == ["sma_ratio"] == fs.names
    sma = talib.SMA(close, timeperiod=3)
    np.testing.assert_array_equal(out["sma_ratio"][3:], sma[3:] / sma[2:-1])
    assert fs.warmups == {"sma_ratio": 3}
    assert fs.warmup == 3
    assert fs.spec("sma_3").fn == "SMA"


def test_an_intermediate_cannot_use_a_feature_nor_repeat_a_name() -> None:
    with pytest.raises(ValidationError, match="intermediates cannot use features"):
        FeatureSet(
            name="bad_v1",
            intermediates=(FeatureSpec(name="y", fn="SMA", inputs=("x",)),),
            features=(FeatureSpec(name="x", fn="SMA"),),
        )
    with pytest.raises(ValidationError, match="duplicate or reserved feature name 'x'"):
        FeatureSet(
            name="bad_v1",
            intermediates=(FeatureSpec(name="x", fn="SMA"),),
            features=(FeatureSpec(name="x", fn="EMA"),),
        )
