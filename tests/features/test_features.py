"""bar_features_v1 and the feature engine: content, causality (truncation invariance), warm-ups, lags,
validation and serialization."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from raytrader.data import Bars
from raytrader.errors import ConfigError, UnknownNameError
from raytrader.features import (
    BAR_FEATURES_V1,
    WARM_COLUMN,
    FeatureSet,
    FeatureSpec,
    compute_features,
    get_feature_set,
)
from raytrader.features.engine import compute_arrays

GROUPS = talib.get_function_groups()
# pure arithmetic helpers: element-wise operators (ADD, SUB, DIV, ...) and transforms (LN, SQRT, ...)
ARITHMETIC = frozenset(GROUPS["Math Operators"]) | frozenset(GROUPS["Math Transform"])
INDICATOR_GROUPS = (
    "Momentum Indicators",
    "Overlap Studies",
    "Statistic Functions",
    "Volatility Indicators",
    "Volume Indicators",
    "Cycle Indicators",
    "Price Transform",
    "Pattern Recognition",
)
INDICATORS = frozenset(f for g in INDICATOR_GROUPS for f in GROUPS[g])


def indicator_specs(fs: FeatureSet) -> list[FeatureSpec]:
    return [s for s in fs.features if s.fn is not None and s.fn not in ARITHMETIC]


@pytest.fixture(scope="module")
def goog_features(goog: Bars):
    return compute_features(goog)


@pytest.fixture(scope="module")
def syn_1m(synthetic_bars: Callable[..., Bars]) -> Bars:
    return synthetic_bars(n=5000, seed=3, timeframe="1m")


# ---- content ---------------------------------------------------------------------------------------


def test_feature_names_unique_and_every_fn_is_a_talib_function() -> None:
    names = BAR_FEATURES_V1.names
    assert len(names) == len(set(names))
    all_fns = set(talib.get_functions())
    for spec in BAR_FEATURES_V1.features:
        assert spec.fn is None or spec.fn in all_fns, spec.name
    assert get_feature_set("bar_features_v1") is BAR_FEATURES_V1


def test_indicator_features_are_counted_from_talib_indicator_groups() -> None:
    specs = indicator_specs(BAR_FEATURES_V1)
    assert all(s.fn in INDICATORS for s in specs)
    assert len(specs) >= 40
    assert len({s.fn for s in specs}) >= 20  # distinct indicator functions


def test_bar_features_v1_has_at_least_40_talib_indicator_features() -> None:
    assert len(indicator_specs(BAR_FEATURES_V1)) >= 40


def test_unknown_feature_set_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="bar_features_v1"):
        get_feature_set("bar_features_v9")


# ---- truncation invariance ---------------------------------------------------------------------------


def _assert_prefix_equal(bars: Bars, full, cuts: list[int]) -> None:
    for cut in cuts:
        part = compute_features(bars.head(cut))
        assert list(part.columns) == list(full.columns)
        assert part.index.equals(full.index[:cut])
        for name in BAR_FEATURES_V1.names:
            assert np.array_equal(
                part[name].to_numpy(), full[name].to_numpy()[:cut], equal_nan=True
            ), f"{name} differs when computed on the first {cut} bars"
        assert np.array_equal(part[WARM_COLUMN].to_numpy(), full[WARM_COLUMN].to_numpy()[:cut])


def test_features_on_a_prefix_equal_the_full_computation_on_goog(goog: Bars, goog_features) -> None:
    rng = np.random.default_rng(20240101)
    cuts = sorted(
        {
            1,
            2,
            BAR_FEATURES_V1.warmup,
            BAR_FEATURES_V1.warmup + 1,
            *rng.integers(3, len(goog), size=8).tolist(),
        }
    )
    _assert_prefix_equal(goog, goog_features, cuts)


def test_features_on_a_prefix_equal_the_full_computation_on_synthetic_1m(syn_1m: Bars) -> None:
    full = compute_features(syn_1m)
    rng = np.random.default_rng(7)
    cuts = sorted({35, *rng.integers(3, len(syn_1m), size=9).tolist()})
    _assert_prefix_equal(syn_1m, full, cuts)


# ---- warm-up -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAR_FEATURES_V1.names)
def test_first_valid_index_equals_declared_warmup_on_goog(goog_features, name: str) -> None:
    values = goog_features[name].to_numpy()
    valid = np.flatnonzero(~np.isnan(values))
    warm = BAR_FEATURES_V1.warmups[name]
    assert valid[0] == warm
    assert np.isnan(values[:warm]).all()


def test_warm_column_is_false_exactly_before_the_set_warmup(goog_features, syn_1m: Bars) -> None:
    warmup = BAR_FEATURES_V1.warmup
    assert warmup == max(BAR_FEATURES_V1.warmups.values()) > 0
    warm = goog_features[WARM_COLUMN].to_numpy()
    assert warm.dtype == bool
    assert not warm[:warmup].any()
    assert warm[warmup:].all()
    # past the warm-up every feature is valid on goog (no ratio divides by zero there)
    assert not goog_features.iloc[warmup:].drop(columns=WARM_COLUMN).isna().any().any()
    short = compute_features(syn_1m.head(warmup - 1))
    assert not short[WARM_COLUMN].any()


def test_warmups_follow_the_dependency_graph() -> None:
    w = BAR_FEATURES_V1.warmups
    assert w["ret_1"] == 1
    assert w["sma_20"] == 19
    assert w["obv"] == 0
    assert w["logret_1"] == 1
    assert w["volatility_20"] == 1 + 19
    assert w["macd"] == w["macd_signal"] == w["macd_hist"] == 33
    assert w["bb_pctb"] == w["bb_upper"] == 19
    assert w["ret_1_lag3"] == w["ret_1"] + 3
    assert BAR_FEATURES_V1.max_lookback_hint == BAR_FEATURES_V1.warmup + 1


# ---- lags -------------------------------------------------------------------------------------------


LAGGED = [s for s in BAR_FEATURES_V1.features if s.lag > 0]


@pytest.mark.parametrize("spec", LAGGED, ids=[s.name for s in LAGGED])
def test_lag_feature_equals_the_shifted_base_feature(goog_features, spec: FeatureSpec) -> None:
    assert spec.fn is None
    (base,) = spec.inputs
    expected = goog_features[base].shift(spec.lag).to_numpy()
    assert np.array_equal(goog_features[spec.name].to_numpy(), expected, equal_nan=True)


def test_lag_on_a_talib_result_and_lag_longer_than_the_data() -> None:
    fs = FeatureSet(
        name="lagged_v1",
        features=(
            FeatureSpec(name="sma_3", fn="SMA", params={"timeperiod": 3}),
            FeatureSpec(name="sma_3_lag2", fn="SMA", params={"timeperiod": 3}, lag=2),
            FeatureSpec(name="sma_3_lag9", fn=None, inputs=("sma_3",), lag=9),
        ),
    )
    close = np.arange(1.0, 8.0)
    cols = {c: close for c in ("open", "high", "low", "close", "volume")}
    out = compute_arrays(fs, cols)
    np.testing.assert_array_equal(out["sma_3_lag2"][4:], out["sma_3"][2:-2])
    assert np.isnan(out["sma_3_lag2"][:4]).all()
    assert np.isnan(out["sma_3_lag9"]).all()
    assert fs.warmups == {"sma_3": 2, "sma_3_lag2": 4, "sma_3_lag9": 11}


def test_division_by_zero_becomes_nan_not_inf() -> None:
    fs = FeatureSet(
        name="ratio_v1",
        features=(
            FeatureSpec(name="spread", fn="SUB", inputs=("high", "low")),
            FeatureSpec(name="ratio", fn="DIV", inputs=("close", "spread")),
        ),
    )
    ones = np.ones(4)
    out = compute_arrays(
        fs,
        {
            "open": ones,
            "high": np.array([2.0, 1.0, 3.0, 1.0]),
            "low": ones,
            "close": ones,
            "volume": ones,
        },
    )
    assert np.array_equal(out["ratio"], [1.0, np.nan, 0.5, np.nan], equal_nan=True)


# ---- validation ------------------------------------------------------------------------------------


def _set(*specs: FeatureSpec) -> FeatureSet:
    return FeatureSet(name="test_v1", features=specs)


def test_unknown_input_reference_is_rejected() -> None:
    with pytest.raises(
        ValidationError, match="input 'sma_5' is neither a bar column nor a feature"
    ):
        _set(
            FeatureSpec(name="ratio", fn="DIV", inputs=("close", "sma_5")),
            FeatureSpec(name="sma_5", fn="SMA", params={"timeperiod": 5}),
        )


def test_duplicate_or_reserved_feature_name_is_rejected() -> None:
    with pytest.raises(ValidationError, match="duplicate or reserved feature name 'sma'"):
        _set(FeatureSpec(name="sma", fn="SMA"), FeatureSpec(name="sma", fn="EMA"))
    with pytest.raises(ValidationError, match="duplicate or reserved feature name 'close'"):
        _set(FeatureSpec(name="close", fn="SMA"))


def test_unknown_talib_function_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown TA-Lib function 'NOT_A_FUNCTION'"):
        FeatureSpec(name="x", fn="NOT_A_FUNCTION")


def test_unknown_talib_parameter_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"TA-Lib SMA has no parameter\(s\) \['period'\]"):
        FeatureSpec(name="x", fn="SMA", params={"period": 5})


def test_wrong_number_of_inputs_is_rejected() -> None:
    with pytest.raises(ValidationError, match="TA-Lib ATR takes 3 input series, got 1"):
        FeatureSpec(name="x", fn="ATR", inputs=("close",))


BAD_TALIB_SPECS = [
    pytest.param({"name": "x", "fn": "NOT_A_FUNCTION"}, id="unknown-function"),
    pytest.param({"name": "x", "fn": "SMA", "params": {"period": 5}}, id="unknown-parameter"),
    pytest.param({"name": "x", "fn": "MACD", "output": "nope"}, id="unknown-output"),
    pytest.param({"name": "x", "fn": "MACD"}, id="multi-output-without-output"),
]


@pytest.mark.parametrize("spec", BAD_TALIB_SPECS)
def test_invalid_talib_call_is_rejected_when_the_feature_set_is_built(
    spec: dict[str, object],
) -> None:
    with pytest.raises((ValidationError, ConfigError)):
        _set(FeatureSpec.model_validate(spec))


@pytest.mark.parametrize("spec", BAD_TALIB_SPECS)
def test_computing_an_invalid_talib_call_raises_config_error(
    goog: Bars, spec: dict[str, object]
) -> None:
    """Specs that skipped validation (model_construct) still fail with a ConfigError naming them."""
    raw = {"inputs": ("close",), "params": {}, "output": None, "lag": 0, "description": "", **spec}
    fs = FeatureSet.model_construct(
        name="bad_v1", description="", features=(FeatureSpec.model_construct(**raw),)
    )
    with pytest.raises(ConfigError, match="feature 'x'"):
        compute_features(goog, fs)


def test_spec_without_fn_must_be_a_single_input_lag() -> None:
    with pytest.raises(ValidationError, match="lagged copy"):
        FeatureSpec(name="x", fn=None, inputs=("close",), lag=0)
    with pytest.raises(ValidationError, match="lagged copy"):
        FeatureSpec(name="x", fn=None, inputs=("close", "open"), lag=1)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "Bad Name", "fn": "SMA"},
        {"name": "x", "fn": "SMA", "lag": -1},
        {"name": "x", "fn": "SMA", "colour": "red"},
    ],
)
def test_invalid_spec_fields_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FeatureSpec.model_validate(bad)


def test_feature_set_name_must_carry_a_version() -> None:
    with pytest.raises(ValidationError):
        FeatureSet(name="unversioned", features=(FeatureSpec(name="x", fn="SMA"),))
    with pytest.raises(ConfigError, match="no feature 'nope'"):
        BAR_FEATURES_V1.spec("nope")


# ---- serialization ---------------------------------------------------------------------------------


def test_feature_set_json_round_trip(goog: Bars, goog_features) -> None:
    dumped = BAR_FEATURES_V1.model_dump(mode="json")
    assert dumped == BAR_FEATURES_V1.to_json_dict()
    again = FeatureSet.model_validate(dumped)
    assert again == BAR_FEATURES_V1
    assert again.warmups == BAR_FEATURES_V1.warmups
    from_json = FeatureSet.model_validate_json(BAR_FEATURES_V1.model_dump_json())
    assert from_json == BAR_FEATURES_V1
    recomputed = compute_features(goog, from_json)
    for name in BAR_FEATURES_V1.names:
        assert np.array_equal(
            recomputed[name].to_numpy(), goog_features[name].to_numpy(), equal_nan=True
        )
    assert recomputed.attrs == {
        "feature_set": "bar_features_v1",
        "symbol": "GOOG",
        "timeframe": "1d",
    }
